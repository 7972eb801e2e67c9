"""``fraudops``: the command line for humans (set-up, environment, simulation, the demo)."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml

from cli.stack import app as stack_app
from cli.usage import OneLineUsageErrors, settings_or_exit, usage_error
from fraudops.environ import set_process_defaults, settings_env
from fraudops.settings import Settings

# A user error is one line (cli/usage.py); anything else is a plain Python traceback, never
# Rich's, which renders every frame's locals (Dagster objects take minutes to print).
app = typer.Typer(
    cls=OneLineUsageErrors,
    help="fraudops: an end-to-end fraud-detection ML platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_app, name="stack")

# Run monitoring (docs/operations.md), run by the daemon that `dagster dev` starts. The
# default run launcher cannot check or resume a run worker, so a run whose worker died is
# only failed once it exceeds max_runtime_seconds, and an instance configured with resume
# attempts above 0 refuses to load.
RUN_MONITORING_YAML = """\
# Fail runs stuck starting or cancelling, and runs left STARTED by a killed worker once they
# exceed max_runtime_seconds (a run's dagster/max_runtime tag overrides it).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 21600
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""
DAGSTER_YAML = (
    """\
# Written by `fraudops init`. Embedded profile: SQLite storage under this folder.
telemetry:
  enabled: false
"""
    + RUN_MONITORING_YAML
)


def _say(message: str) -> None:
    typer.echo(f"[fraudops {time.strftime('%H:%M:%S')}] {message}")


def _usage_error(command: str, message: str) -> NoReturn:
    """Print a one-line usage error for ``fraudops <command>`` and exit with status 2."""
    usage_error(f"fraudops {command}", message)


def _settings(command: str, **overrides: object) -> Settings:
    """The settings in force with ``overrides``, or a one-line error naming the bad values."""
    return settings_or_exit(f"fraudops {command}", **overrides)


def _require_at_least(command: str, option: str, value: int, low: int, variable: str) -> None:
    """Refuse ``option`` below ``low``; ``variable`` is the setting its default comes from."""
    if value < low:
        source = f" (the default comes from {variable})" if variable else ""
        _usage_error(command, f"{option} must be at least {low}, got {value}{source}")


def _check_counts(command: str, settings: Settings) -> None:
    """Refuse simulator counts the simulator cannot run with, from options or settings."""
    _require_at_least(command, "--customers", settings.sim_customers, 1, "FRAUDOPS_SIM_CUSTOMERS")
    _require_at_least(command, "--terminals", settings.sim_terminals, 1, "FRAUDOPS_SIM_TERMINALS")
    _require_at_least(command, "--seed", settings.sim_seed, 0, "FRAUDOPS_SIM_SEED")


def _check_protocol_days(settings: Settings) -> None:
    """Refuse a demo too short for the training protocol, which would fail in retraining."""
    # Labels come label_delay_days late; the protocol's splits need train + gap + two test
    # windows of labelled days (ml/split.py protocol_splits).
    from ml.split import labelled_days_needed

    labelled = labelled_days_needed(settings)
    needed = labelled + settings.label_delay_days
    if settings.sim_days < needed:
        _usage_error(
            "demo",
            f"--days must be at least {needed} for the training protocol ({labelled} labelled "
            f"days: FRAUDOPS_TRAIN_DAYS, FRAUDOPS_LABEL_DELAY_DAYS, 2 x FRAUDOPS_TEST_DAYS; "
            f"labels come {settings.label_delay_days} days late), got {settings.sim_days}",
        )


def _overrides(**values: object) -> dict[str, object]:
    """The options that were given (None means: keep the setting)."""
    return {name: value for name, value in values.items() if value is not None}


def landed_days(landing: Path, start: dt.date, end: dt.date) -> list[dt.date]:
    """Days from ``start`` to ``end`` for which ``landing`` already holds an extract."""
    from lakehouse.source import FEEDS, extract_path

    days = (start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    return [d for d in days if any(extract_path(landing, f, d).exists() for f in FEEDS)]


def existing_tables(settings: Settings) -> list[str]:
    """The platform's Delta tables that already exist under the settings."""
    from fraudops.catalog import ALL_TABLES
    from lakehouse.delta import table_exists

    return [
        f"{table.layer}/{table.name}"
        for table in ALL_TABLES
        if table_exists(table.uri(settings), settings.storage_options)
    ]


def _span(days: list[dt.date]) -> str:
    return f"{len(days)} of these days ({days[0]} .. {days[-1]})"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


class InstanceConfigError(ValueError):
    """The existing Dagster instance config cannot be read, so it is not changed."""


def write_dagster_yaml(path: Path) -> None:
    """Write the Dagster instance config, or add run monitoring to an existing one.

    An existing file keeps every key and comment it has; a ``run_monitoring`` section the user
    wrote is left as it is.
    """
    if not path.exists():
        text = DAGSTER_YAML
    else:
        text = path.read_text()
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            problem = getattr(exc, "problem", None) or "unreadable"
            raise InstanceConfigError(f"{path} is not valid YAML ({problem}{line})") from exc
        if config is not None and not isinstance(config, dict):
            raise InstanceConfigError(f"{path} is not a YAML mapping")
        if "run_monitoring" in (config or {}):
            return
        # Appended as text rather than re-dumped, so the user's comments and order survive.
        text = text + ("\n" if text and not text.endswith("\n") else "") + RUN_MONITORING_YAML
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # a Dagster process never reads half a file


def prepare_runtime(settings: Settings) -> None:
    """Create the runtime folders and the Dagster instance config; export their locations."""
    for path in (settings.home, settings.landing_path, settings.dagster_home_path):
        path.mkdir(parents=True, exist_ok=True)
    write_dagster_yaml(settings.dagster_home_path / "dagster.yaml")
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home_path))
    set_process_defaults()


@app.command()
def init() -> None:
    """Create the runtime folders (var/) and the Dagster instance configuration."""
    settings = _settings("init")
    try:
        prepare_runtime(settings)
    except InstanceConfigError as exc:
        _usage_error("init", f"{_one_line(exc)}: fix or remove it")
    _say(f"runtime state in {settings.home}")


@app.command()
def env() -> None:
    """Print the settings' process environment as shell export lines (for eval)."""
    settings = _settings("env")
    for name, value in sorted(settings_env(settings).items()):
        typer.echo(f"export {name}={shlex.quote(value)}")


FORCE_HELP = "Replace the data that is already there."


@app.command()
def simulate(
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD).")] = None,
    days: Annotated[int, typer.Option(help="Number of days.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Landing folder (default: settings).")] = None,
    customers: Annotated[int | None, typer.Option(help="Customers.")] = None,
    terminals: Annotated[int | None, typer.Option(help="Terminals.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Generate a date range of the source system's extracts as Parquet files for inspection."""
    from lakehouse.simulator import Simulator, SimulatorConfig
    from lakehouse.source import land_range

    settings = _settings(
        "simulate",
        **_overrides(sim_customers=customers, sim_terminals=terminals, sim_seed=seed),
    )
    _check_counts("simulate", settings)
    _require_at_least("simulate", "--days", days, 1, "")
    try:
        first = dt.date.fromisoformat(start) if start else settings.sim_start_date
    except ValueError:
        _usage_error("simulate", f"--start must be a date (YYYY-MM-DD), got {start!r}")
    if first < settings.sim_start_date:
        _usage_error(
            "simulate",
            f"--start {first} is before the simulation start {settings.sim_start_date} "
            "(FRAUDOPS_SIM_START_DATE)",
        )
    last = first + dt.timedelta(days=days - 1)
    landing = out or settings.landing_path
    if landing.exists() and not landing.is_dir():
        _usage_error("simulate", f"--out {landing} is a file, not a folder")
    landed = landed_days(landing, first, last)
    if landed and not force:
        _usage_error(
            "simulate",
            f"{landing} already holds extracts for {_span(landed)}; "
            "pass --force to replace them, or --out another folder",
        )
    summary = land_range(Simulator(SimulatorConfig.from_settings(settings)), landing, first, last)
    _say(
        f"landed {summary.days} days in {landing}: {summary.transactions:,} transactions, "
        f"{summary.frauds:,} frauds, {summary.reports:,} fraud reports"
    )


@app.command()
def demo(
    days: Annotated[int | None, typer.Option(help="Simulated days (default: settings).")] = None,
    customers: Annotated[int | None, typer.Option(help="Customers (default: settings).")] = None,
    terminals: Annotated[int | None, typer.Option(help="Terminals (default: settings).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Run the main job end to end on the embedded profile, printing progress and a summary."""
    settings = _settings(
        "demo", **_overrides(sim_days=days, sim_customers=customers, sim_terminals=terminals)
    )
    _require_at_least("demo", "--days", settings.sim_days, 1, "FRAUDOPS_SIM_DAYS")
    _check_counts("demo", settings)
    _check_protocol_days(settings)
    if not force:
        tables = existing_tables(settings)
        landed = landed_days(settings.landing_path, settings.sim_start_date, settings.sim_end_date)
        if tables or landed:
            found = [f"{settings.lakehouse_root} holds {', '.join(tables)}"] if tables else []
            if landed:
                found.append(f"{settings.landing_path} holds extracts for {_span(landed)}")
            _usage_error(
                "demo",
                f"{'; '.join(found)}; the demo would replace them: pass --force, or set "
                "FRAUDOPS_HOME to an empty folder (make clean empties var/)",
            )
    from cli.demo import NoChampionError, run_demo

    try:
        prepare_runtime(settings)
    except InstanceConfigError as exc:
        _usage_error("demo", f"{_one_line(exc)}: fix or remove it")
    # run_demo hands these settings to Dagster through the environment (settings_env).
    try:
        run_demo(settings, _say, force=force)
    except NoChampionError as exc:
        typer.echo(f"fraudops demo: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
