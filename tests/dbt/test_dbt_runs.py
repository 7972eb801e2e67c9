"""dbt runs: incremental rebuilds equal a full build; broken inputs fail loudly."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from deltalake import DeltaTable

from lakehouse import delta
from tests.dbt.conftest import copy_home, mart_state, run_dbt

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


def test_a_missing_raw_day_fails_the_build_and_leaves_every_mart_as_it_was(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    hole = settings.sim_start_date + dt.timedelta(days=5)
    DeltaTable(settings.table_uri("raw", "transactions")).delete(f"tx_date = '{hole}'")
    before = mart_state(settings)
    build = run_dbt(settings, "build")
    assert build.returncode != 0
    assert "FAIL 1 raw_transactions_have_no_missing_day" in build.stdout
    # No mart was rewritten from the broken input: not even labelled_transactions, which does
    # not read the day spine.
    assert mart_state(settings) == before
    assert "FAIL 1 raw_transactions_hold_every_ingested_row" in build.stdout
    # Without tests (dbt run), the day spine itself refuses to build.
    run = run_dbt(settings, "run", "--select", "+int_calendar__as_of_days")
    assert run.returncode != 0
    assert f"raw transactions miss 1 day(s) between {settings.sim_start_date}" in run.stdout


def test_a_missing_newest_day_fails_the_build_and_source_freshness(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    fresh = run_dbt(settings, "source", "freshness")
    assert fresh.returncode == 0, fresh.stdout[-4000:]
    # The newest day is lost after its ingestion completed: the log still expects it.
    last = settings.sim_end_date
    DeltaTable(settings.table_uri("raw", "transactions")).delete(f"tx_date = '{last}'")
    before = mart_state(settings)
    build = run_dbt(settings, "build")
    assert build.returncode != 0
    assert "FAIL 1 raw_transactions_reach_the_expected_last_day" in build.stdout
    assert mart_state(settings) == before
    # Freshness is measured against the end of the expected day, not the clock (2018 data).
    stale = run_dbt(settings, "source", "freshness")
    assert stale.returncode != 0
    assert "ERROR STALE freshness of lakehouse.transactions" in stale.stdout


def test_a_run_expecting_a_day_the_raw_feed_lacks_fails(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    # Dagster passes the run's last day: one the ingestion never logged is missing too.
    later = settings.sim_end_date + dt.timedelta(days=1)
    expect = ["--vars", f"{{to_date: {later.isoformat()}}}"]
    partitions = ["--select", "stg_lakehouse__transaction_partitions"]
    build = run_dbt(settings, "build", *partitions, *expect)
    assert build.returncode != 0
    assert "FAIL 1 raw_transactions_reach_the_expected_last_day" in build.stdout
    run = run_dbt(settings, "run", "--select", "+int_calendar__as_of_days", *expect)
    assert run.returncode != 0
    assert f"raw transactions miss 1 day(s) between {settings.sim_start_date} and {later}" in (
        run.stdout
    )


def test_a_lost_report_day_fails_the_report_feed_completeness_test(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    reports = DeltaTable(settings.table_uri("raw", "fraud_reports"))
    day = reports.to_pandas(columns=["report_date"])["report_date"].mode()[0]
    reports.delete(f"report_date = '{day}'")
    build = run_dbt(settings, "build", "--select", "stg_lakehouse__fraud_report_partitions")
    assert build.returncode != 0
    assert "FAIL 1 raw_fraud_reports_hold_every_ingested_row" in build.stdout


def test_a_failing_test_anywhere_in_the_build_writes_no_mart(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    # A customer lost from the master data: the relationships tests on the transactions fail.
    # dbt skips only the nodes that read both models, so it still builds the marts that do
    # not read the customers, and their own relationships tests run after they are built.
    raw = DeltaTable(settings.table_uri("raw", "transactions"))
    customer = int(raw.to_pandas(columns=["customer_id"])["customer_id"].iloc[0])
    DeltaTable(settings.table_uri("raw", "customers")).delete(f"customer_id = {customer}")
    before = mart_state(settings)
    build = run_dbt(settings, "build")
    assert build.returncode != 0
    assert "relationships_stg_lakehouse__transactions_customer_id" in build.stdout
    assert "OK created sql delta model marts.labelled_transactions" in build.stdout
    # Built, tested, never committed: the tables and their folders are as they were.
    assert mart_state(settings) == before
    assert "delta: not writing" in build.stdout


def test_sources_missing_from_the_lakehouse_fail_with_a_hint(tmp_settings):
    result = run_dbt(tmp_settings, "build")
    assert result.returncode != 0
    assert "no Delta table at" in result.stdout
    assert "Ingest the raw feeds first" in result.stdout
