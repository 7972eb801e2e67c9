"""``fraudops stack up|down|status``: the local production stack as processes on this machine.

The processes are those of :mod:`cli.stack_components`, each with a pid file and a log under
``<FRAUDOPS_HOME>/stack`` (docs/operations.md, "The local stack").
"""

from __future__ import annotations

import shutil
import time
from typing import Annotated

import httpx
import typer

from cli.stack_components import (
    BIN,
    check_redis,
    components,
    delete_online_rows,
    drop_databases,
    prepare_databases,
    register_features,
    stack_dir,
    uses_stand_in,
    write_instance,
)
from cli.stack_processes import Managed, StackError
from cli.usage import OneLineUsageErrors, settings_or_exit, usage_error
from fraudops.settings import Settings

app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Start, stop and check the local production stack (FRAUDOPS_PROFILE=production).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _say(message: str) -> None:
    typer.echo(f"[fraudops stack {time.strftime('%H:%M:%S')}] {message}")


def _fail(command: str, message: str) -> None:
    """One line on stderr, exit status 1 (the stack, not the command line, is at fault)."""
    typer.echo(f"fraudops stack {command}: {message}", err=True)
    raise typer.Exit(1)


def production_settings(command: str) -> Settings:
    """The settings in force, which must be the production profile's."""
    settings = settings_or_exit(f"fraudops stack {command}")
    if settings.profile != "production":
        usage_error(
            f"fraudops stack {command}",
            "the stack runs the production profile: set FRAUDOPS_PROFILE=production",
        )
    return settings


def preflight(settings: Settings) -> None:
    """Refuse to start without API keys, the stand-in's package, PostgreSQL or Redis."""
    if not settings.serving_api_keys:
        raise StackError(
            "FRAUDOPS_SERVING_API_KEYS is not set: the production profile takes the service's "
            "API keys only from the environment (a JSON list)"
        )
    if uses_stand_in(settings) and shutil.which("moto_server", path=str(BIN)) is None:
        raise StackError("the S3 stand-in (moto_server) is not installed: pip install -e '.[dev]'")
    check_redis(settings)
    created = prepare_databases(settings)
    if created:
        _say(f"created databases {', '.join(created)}")


def bring_up(settings: Settings) -> list[Managed]:
    """Start every process not running yet; stop those started here if one fails.

    The stand-in comes first (the bucket must exist), then MLflow and Dagster together (each
    waits for its own health check), the service last: it reads the registries at start-up.
    """
    preflight(settings)
    for path in (settings.home, settings.landing_path):
        path.mkdir(parents=True, exist_ok=True)
    write_instance(settings)
    chosen = components(settings)
    for managed in chosen:
        managed.check_port()
    waves = [
        [m for m in chosen if m.name == "s3"],
        [m for m in chosen if m.name not in ("s3", "service")],
        [m for m in chosen if m.name == "service"],
    ]
    started: list[Managed] = []
    try:
        for wave in waves:
            for managed in wave:
                _before_launch(managed, settings)
                if managed.launch():
                    started.append(managed)
            for managed in wave:
                managed.wait()
                where = f" on {managed.host}:{managed.port}" if managed.port else ""
                state = "started" if managed in started else "already running"
                _say(f"{managed.name} {state}{where} (pid {managed.process().pid})")
    except StackError:
        for managed in reversed(started):
            managed.stop()
        raise
    return started


def _before_launch(managed: Managed, settings: Settings) -> None:
    """What a process needs before it starts, done only when it is not running yet."""
    if managed.running():
        return
    if managed.name == "dagster-code-server":
        # The code location loads the dbt manifest: parse the project's models first.
        from orchestration.defs.dbt.resources import prepare_dbt_project

        prepare_dbt_project()
    if managed.name == "service":
        # A fresh registry has no feature views yet; the service opens them at start.
        register_features(settings)


def bring_down(settings: Settings) -> list[str]:
    """Stop every process of the stack, the service first; returns the names stopped."""
    stopped = []
    for managed in reversed(components(settings)):
        if managed.stop():
            stopped.append(managed.name)
            _say(f"{managed.name} stopped")
    return stopped


def purge(settings: Settings) -> None:
    """Drop the profile's databases, its online rows in Redis and the runtime folder's state."""
    dropped = drop_databases(settings)
    keys = delete_online_rows(settings)
    for path in (
        stack_dir(settings),
        settings.dagster_home_path,
        settings.landing_path,
        settings.monitoring_path,
        settings.home / "serving",
        settings.home / "feast",
    ):
        shutil.rmtree(path, ignore_errors=True)
    settings.duckdb_file.unlink(missing_ok=True)
    _say(f"purged: databases {', '.join(dropped) or 'none'}, {keys} Redis keys, runtime state")


def readiness(settings: Settings) -> str:
    """The service's ``/readyz`` in a few words."""
    try:
        body = httpx.get(f"{settings.stack_service_url}/readyz", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return "no answer"
    champion = (body.get("serving") or {}).get("champion") or {}
    version = champion.get("version")
    state = "ready" if body.get("ready") else "not ready"
    return f"{state}, champion {version}" if version else f"{state}, no champion"


@app.command()
def up() -> None:
    """Start the stack (S3 stand-in, MLflow, Dagster, the service), each until healthy."""
    settings = production_settings("up")
    try:
        bring_up(settings)
    except StackError as exc:
        _fail("up", str(exc))
    _say(
        f"stack up: Dagster UI http://{settings.stack_host}:{settings.stack_dagster_port}, "
        f"MLflow {settings.stack_mlflow_url}, service {settings.stack_service_url} "
        f"(logs in {stack_dir(settings)})"
    )


@app.command()
def down(
    purge_state: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also drop the profile's databases, Redis rows and runtime state (needs --force).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Confirm --purge.")] = False,
) -> None:
    """Stop every process of the stack (the service first, so its log is flushed)."""
    settings = production_settings("down")
    if purge_state and not force:
        usage_error(
            "fraudops stack down",
            "--purge deletes the profile's databases, Redis rows and runtime state: add --force",
        )
    stopped = bring_down(settings)
    if not stopped:
        _say("nothing was running")
    if purge_state:
        try:
            purge(settings)
        except Exception as exc:
            _fail("down", f"purge failed: {' '.join(str(exc).split())}")


@app.command()
def status() -> None:
    """One line per process (pid, port, health, log); exit status 1 unless all are healthy."""
    settings = production_settings("status")
    all_healthy = True
    for managed in components(settings):
        proc = managed.process()
        healthy = managed.healthy()
        all_healthy &= healthy
        state = "healthy" if healthy else ("running, unhealthy" if proc else "stopped")
        where = f"{managed.host}:{managed.port}" if managed.port else "-"
        extra = f" ({readiness(settings)})" if managed.name == "service" and healthy else ""
        pid = proc.pid if proc else "-"
        typer.echo(
            f"{managed.name:20} {state:19} pid {pid!s:8} {where:16} {managed.log_file}{extra}"
        )
    if not all_healthy:
        raise typer.Exit(1)


@app.command()
def demo(
    force: Annotated[
        bool, typer.Option("--force", help="Replace what an earlier run left.")
    ] = False,
    live: Annotated[int, typer.Option(help="Transactions of the next day to score.")] = 2_000,
) -> None:
    """Run the loop against the running stack: ingest, dbt, Feast, train, promote, serve."""
    from cli.prod_demo import DemoStageError, run_prod_demo

    settings = production_settings("demo")
    unhealthy = [m.name for m in components(settings) if not m.healthy()]
    if unhealthy:
        _fail("demo", f"not healthy: {', '.join(unhealthy)}; start the stack (make prod-up)")
    try:
        result = run_prod_demo(settings, _say, force=force, live_limit=live)
    except DemoStageError as exc:
        _fail("demo", str(exc))
    timings = ", ".join(f"{name} {secs:.1f} s" for name, secs in result["timings_s"].items())
    _say(f"production demo finished: {timings}")
