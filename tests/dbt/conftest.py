"""Fixtures of the dbt tests: a tiny lakehouse with bad rows, built once by ``dbt build``."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from fraudops.environ import settings_env
from fraudops.settings import Settings, get_settings
from lakehouse.ingestion import ingest_simulation
from lakehouse.source import extract_path
from orchestration.defs.dbt.resources import DBT_PROJECT_DIR

DBT = Path(sys.executable).parent / "dbt"
BAD_DAY_OFFSET = 10
# Transaction ids of the injected bad rows (far above the simulator's ids).
UNKNOWN_CUSTOMER_ID = 990_000_001
NEGATIVE_AMOUNT_ID = 990_000_002
DUPLICATE_AMOUNT = 12_345.67
MARTS = ("customer_features", "terminal_features", "labelled_transactions")


def run_dbt(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the dbt CLI on the project for ``settings`` (plus ``env``), with its own folders."""
    work = settings.home / "dbt"
    env = {
        **os.environ,
        **settings_env(settings),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        **(env or {}),
    }
    return subprocess.run(
        [str(DBT), *args],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def mart_state(settings: Settings) -> dict[str, tuple[int, int, int]]:
    """Per mart: its Delta version, its row count and the Parquet files in its folder."""
    state = {}
    for name in MARTS:
        uri = settings.table_uri("marts", name)
        table = DeltaTable(uri)
        records = table.get_add_actions(flatten=True).column("num_records").to_pylist()
        rows = sum(int(n) for n in records)
        # Files no version references count too: a failed build must leave none behind.
        files = len(list(Path(uri).rglob("*.parquet")))
        state[name] = (table.version(), rows, files)
    return state


def copy_home(settings: Settings, destination: Path) -> Settings:
    """A copy of a whole runtime folder (lakehouse, DuckDB file) with settings pointing at it."""
    shutil.copytree(settings.home, destination)
    return get_settings(
        home=destination,
        sim_customers=settings.sim_customers,
        sim_terminals=settings.sim_terminals,
        sim_days=settings.sim_days,
    )


def _inject_bad_rows(settings: Settings, day: dt.date) -> None:
    """Append to one day's extract an unknown customer, a negative amount and a duplicate id."""
    path = extract_path(settings.landing_path, "transactions", day)
    table = pq.read_table(path)
    frame = table.to_pandas()
    bad = frame.head(3).copy()
    bad["transaction_id"] = [UNKNOWN_CUSTOMER_ID, NEGATIVE_AMOUNT_ID, frame["transaction_id"][0]]
    bad["customer_id"] = [999_999, frame["customer_id"][0], frame["customer_id"][0]]
    bad["tx_amount"] = [10.0, -5.0, DUPLICATE_AMOUNT]
    rows = pd.concat([frame, bad], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(rows, schema=table.schema, preserve_index=False), path)


@pytest.fixture(scope="session")
def dbt_lakehouse(tiny_lakehouse, tmp_path_factory) -> Settings:
    """The tiny simulation with bad rows injected, ingested, then built by ``dbt build``."""
    source = tiny_lakehouse.settings
    settings = get_settings(
        home=tmp_path_factory.mktemp("dbt") / "var",
        sim_customers=source.sim_customers,
        sim_terminals=source.sim_terminals,
        sim_days=source.sim_days,
    )
    shutil.copytree(source.landing_path, settings.landing_path)
    _inject_bad_rows(settings, settings.sim_start_date + dt.timedelta(days=BAD_DAY_OFFSET))
    ingest_simulation(settings)
    result = run_dbt(settings, "build")
    assert result.returncode == 0, result.stdout[-4000:]
    return settings
