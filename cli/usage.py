"""Usage errors of the command lines: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from fraudops.settings import Settings, get_settings

USAGE = 2


def usage_error(command: str, message: str) -> NoReturn:
    """Print ``<command>: <message>`` on stderr and exit with the usage status (2)."""
    typer.echo(f"{command}: {message}", err=True)
    raise typer.Exit(USAGE)


def settings_or_exit(command: str, **overrides: object) -> Settings:
    """The settings in force with ``overrides``, or a one-line error naming the bad values."""
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"FRAUDOPS_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        usage_error(command, f"invalid settings: {problems}")


def _is_usage_error(exc: BaseException) -> bool:
    # Typer vendors its own copy of Click, so its UsageError is recognised by shape (exit
    # status 2 and a context) rather than imported from a private module. The help page a
    # group shows when called without arguments is raised the same way and keeps its form.
    return (
        isinstance(exc, typer.TyperException)
        and getattr(exc, "exit_code", None) == USAGE
        and hasattr(exc, "ctx")
        and type(exc).__name__ != "NoArgsIsHelpError"
    )


class OneLineUsageErrors(TyperGroup):
    """A command group whose usage errors (bad option values, unknown options, missing
    arguments) print as ``<command>: <problem>`` in one line instead of a framed panel."""

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; a usage error raised while parsing or running it is one line."""
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            if not _is_usage_error(exc):
                raise
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else ctx.command_path
            usage_error(where, " ".join(exc.format_message().split()))
