"""``fraudops-model``: the model registry for humans (list versions, gate, promote, roll back)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.usage import OneLineUsageErrors, settings_or_exit, usage_error

# A user error is one line (cli/usage.py); anything else is a plain Python traceback.
app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Versions, promotion and rollback of the fraud model in the MLflow registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

COLUMNS = ("version", "aliases", "candidate", "average_precision", "roc_auc")


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "-"
    if isinstance(value, str) and value.replace(".", "", 1).isdigit() and "." in value:
        return f"{float(value):.4f}"
    return str(value) if value not in ("", None) else "-"


@app.command("list")
def list_command() -> None:
    """List every registered version with its aliases, test metrics and gate decision."""
    from ml.registry import list_versions

    rows = list_versions(settings_or_exit("fraudops-model list"))
    if not rows:
        typer.echo("no registered versions yet: run the retraining job (make demo)")
        return
    header = [*COLUMNS, "card_p@100", "gate_decision", "created"]
    table = [
        [
            *(_cell(row[c]) for c in COLUMNS),
            _cell(row["card_precision_at_100"]),
            _cell(row["gate_decision"]),
            row["created"].strftime("%Y-%m-%d %H:%M"),
        ]
        for row in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for line in [header, *table]:
        typer.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    for row in rows:
        if row["gate_reason"]:
            typer.echo(f"v{row['version']} gate: {row['gate_reason']}")


@app.command()
def gate() -> None:
    """Run the promotion gate now: challenger vs champion on the newest test window."""
    from ml.gate import run_gate

    try:
        decision = run_gate(settings_or_exit("fraudops-model gate"))
    except LookupError as exc:
        usage_error("fraudops-model gate", str(exc))
    typer.echo(f"{decision.decision}: {decision.reason}")


def _version_number(value: str) -> str:
    """A registry version is a positive whole number (``3``, not ``v3`` or ``latest``)."""
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"a version is a number such as 3, got {value!r}")
    return str(int(value))


@app.command()
def promote(
    version: Annotated[
        str,
        typer.Argument(help="Registered version to make champion.", callback=_version_number),
    ],
    reason: Annotated[str, typer.Option(help="Why (recorded on the version).")] = "manual",
) -> None:
    """Make VERSION the champion (the approval step of manual mode)."""
    from ml.registry import list_versions
    from ml.registry import promote as promote_version

    command = "fraudops-model promote"
    settings = settings_or_exit(command)
    registered = [str(row["version"]) for row in list_versions(settings)]
    if not registered:
        usage_error(command, "no registered versions yet: run the retraining job (make demo)")
    if version not in registered:
        usage_error(
            command,
            f"version {version} is not registered; the versions are {', '.join(registered)} "
            "(fraudops-model list)",
        )
    promote_version(settings, version, reason)
    typer.echo(f"version {version} is now champion")


@app.command()
def rollback() -> None:
    """Move the champion back to the version it replaced."""
    from ml.registry import rollback as rollback_champion

    try:
        version = rollback_champion(settings_or_exit("fraudops-model rollback"))
    except LookupError as exc:
        usage_error("fraudops-model rollback", str(exc))
    typer.echo(f"champion rolled back to version {version}")


if __name__ == "__main__":
    app()
