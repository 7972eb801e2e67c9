"""The project's Delta plugin: an incremental run reads only the partitions its filters keep."""

from __future__ import annotations

import importlib

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from dbt.adapters.duckdb.utils import SourceConfig

from orchestration.defs.dbt.resources import DBT_PROJECT_DIR


def _load(settings, monkeypatch, from_date: str) -> pa.Table | ds.Dataset:
    """The raw transactions as the plugin hands them to DuckDB, in a run from ``from_date``."""
    monkeypatch.syspath_prepend(str(DBT_PROJECT_DIR / "plugins"))
    monkeypatch.setenv("FRAUDOPS_DBT_FROM_DATE", from_date)
    plugin = importlib.import_module("fraudops_delta").Plugin("delta", {})
    source = SourceConfig(
        name="transactions",
        identifier="transactions",
        schema="lakehouse",
        database=None,
        meta={"delta_table_path": settings.table_uri("raw", "transactions")},
        tags=[],
    )
    return plugin.load(source)


def test_an_incremental_run_reads_only_the_days_its_filters_keep(dbt_lakehouse, monkeypatch):
    last = dbt_lakehouse.sim_end_date
    full = _load(dbt_lakehouse, monkeypatch, "")
    lazy = _load(dbt_lakehouse, monkeypatch, last.isoformat())
    # A full run reads the whole table into memory; an incremental one gets a lazy dataset whose
    # day filter leaves one partition's file to read.
    assert isinstance(full, pa.Table)
    assert isinstance(lazy, ds.Dataset)
    assert len(list(lazy.get_fragments(filter=ds.field("tx_date") >= last))) == 1
    query = "select * from tx where tx_date >= $1 order by transaction_id"
    with duckdb.connect() as con:
        con.register("tx", full)
        expected = con.sql(query, params=[last]).to_arrow_table()
        con.register("tx", lazy)
        got = con.sql(query, params=[last]).to_arrow_table()
    assert got.num_rows > 0
    assert got.equals(expected)
