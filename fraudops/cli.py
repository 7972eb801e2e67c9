"""``fraudops``: the command line for humans (set-up, simulation, the end-to-end demo)."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from fraudops.settings import Settings, get_settings

app = typer.Typer(
    help="fraudops: an end-to-end fraud-detection ML platform.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DAGSTER_YAML = """\
# Written by `fraudops init`. Embedded profile: SQLite storage under this folder.
telemetry:
  enabled: false
"""


def _say(message: str) -> None:
    typer.echo(f"[fraudops {time.strftime('%H:%M:%S')}] {message}")


def prepare_runtime(settings: Settings) -> None:
    """Create the runtime folders and the Dagster instance config; export their locations."""
    for path in (settings.home, settings.landing_path, settings.dagster_home_path):
        path.mkdir(parents=True, exist_ok=True)
    dagster_yaml = settings.dagster_home_path / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text(DAGSTER_YAML)
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home_path))
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@app.command()
def init() -> None:
    """Create the runtime folders (var/) and the Dagster instance configuration."""
    settings = get_settings()
    prepare_runtime(settings)
    _say(f"runtime state in {settings.home}")


@app.command()
def simulate(
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD).")] = None,
    days: Annotated[int, typer.Option(help="Number of days.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Landing folder (default: settings).")] = None,
    customers: Annotated[int | None, typer.Option(help="Customers.")] = None,
    terminals: Annotated[int | None, typer.Option(help="Terminals.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
) -> None:
    """Generate a date range of the source system's extracts as Parquet files for inspection."""
    from lakehouse.ingestion import simulator_config
    from lakehouse.simulator import Simulator
    from lakehouse.source import land_range

    overrides = {
        k: v
        for k, v in {
            "sim_customers": customers,
            "sim_terminals": terminals,
            "sim_seed": seed,
        }.items()
        if v is not None
    }
    settings = get_settings(**overrides)
    first = dt.date.fromisoformat(start) if start else settings.sim_start_date
    landing = out or settings.landing_path
    summary = land_range(
        Simulator(simulator_config(settings)), landing, first, first + dt.timedelta(days=days - 1)
    )
    _say(
        f"landed {summary.days} days in {landing}: {summary.transactions:,} transactions, "
        f"{summary.frauds:,} frauds, {summary.reports:,} fraud reports"
    )


@app.command()
def demo(
    days: Annotated[int | None, typer.Option(help="Simulated days (default: settings).")] = None,
    customers: Annotated[int | None, typer.Option(help="Customers (default: settings).")] = None,
    terminals: Annotated[int | None, typer.Option(help="Terminals (default: settings).")] = None,
) -> None:
    """Run the main job end to end on the embedded profile, printing progress and a summary."""
    from fraudops.demo import run_demo

    overrides = {
        k: v
        for k, v in {
            "sim_days": days,
            "sim_customers": customers,
            "sim_terminals": terminals,
        }.items()
        if v is not None
    }
    for key, value in overrides.items():
        # Dagster builds its own settings from the environment: pass the overrides through it.
        os.environ[f"FRAUDOPS_{key.upper()}"] = str(value)
    settings = get_settings()
    prepare_runtime(settings)
    run_demo(settings, _say)


if __name__ == "__main__":
    app()
