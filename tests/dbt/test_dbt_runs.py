"""dbt runs: incremental rebuilds equal a full build; broken inputs fail loudly."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from deltalake import DeltaTable

from lakehouse import delta
from tests.dbt.conftest import copy_home, run_dbt

MARTS = {
    "customer_features": ["customer_id", "feature_date"],
    "terminal_features": ["terminal_id", "feature_date"],
    "labelled_transactions": ["transaction_id"],
}


def _mart(settings, name: str) -> pd.DataFrame:
    frame = delta.read_table(settings.table_uri("marts", name)).to_pandas()
    return frame.sort_values(MARTS[name], ignore_index=True)


def test_incremental_run_replaces_only_later_partitions_and_equals_a_full_build(
    dbt_lakehouse, tmp_path
):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    uri = settings.table_uri("marts", "customer_features")
    before = DeltaTable(uri).version()
    from_date = settings.sim_end_date - dt.timedelta(days=2)
    result = run_dbt(settings, "run", "--vars", f"{{from_date: {from_date.isoformat()}}}")
    assert result.returncode == 0, result.stdout[-4000:]
    history = DeltaTable(uri).history(1)[0]
    assert DeltaTable(uri).version() == before + 1
    # Only the months from the one of from_date + 1 on were rewritten, in one commit.
    first_rebuilt = (from_date + dt.timedelta(days=1)).replace(day=1).isoformat()
    assert history["operationParameters"]["predicate"] == f"feature_month >= '{first_rebuilt}'"
    for name in MARTS:
        pd.testing.assert_frame_equal(_mart(settings, name), _mart(dbt_lakehouse, name))


def test_a_missing_raw_day_fails_the_build_with_a_clear_message(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    hole = settings.sim_start_date + dt.timedelta(days=5)
    DeltaTable(settings.table_uri("raw", "transactions")).delete(f"tx_date = '{hole}'")
    before = DeltaTable(settings.table_uri("marts", "customer_features")).version()
    build = run_dbt(settings, "build")
    assert build.returncode != 0
    assert "FAIL 1 raw_transactions_have_no_missing_day" in build.stdout
    # The marts were not rewritten from the broken input.
    assert DeltaTable(settings.table_uri("marts", "customer_features")).version() == before
    # Without tests (dbt run), the day spine itself refuses to build.
    run = run_dbt(settings, "run", "--select", "+int_calendar__as_of_days")
    assert run.returncode != 0
    assert f"raw transactions miss 1 day(s) between {settings.sim_start_date}" in run.stdout


def test_sources_missing_from_the_lakehouse_fail_with_a_hint(tmp_settings):
    result = run_dbt(tmp_settings, "build")
    assert result.returncode != 0
    assert "no Delta table at" in result.stdout
    assert "Ingest the raw feeds first" in result.stdout
