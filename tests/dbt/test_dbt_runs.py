"""dbt runs: incremental rebuilds equal a full build; broken inputs fail loudly."""

from __future__ import annotations

import datetime as dt

import duckdb
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


def _from(day: dt.date) -> dict[str, str]:
    """The environment of an incremental run from ``day`` (macros/run_days.sql)."""
    return {"FRAUDOPS_DBT_FROM_DATE": day.isoformat()}


def _staging(settings, name: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_file), read_only=True) as con:
        frame = con.sql(f"select * from staging.{name}").df()
    return frame.sort_values("transaction_id", ignore_index=True)


def _last_commit(settings, name: str) -> dict:
    return DeltaTable(settings.table_uri("marts", name)).history(1)[0]


def test_incremental_runs_equal_a_full_build_and_keep_partial_parsing(dbt_lakehouse, tmp_path):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    end = settings.sim_end_date
    # Two runs from two different days: the second must not parse the whole project again.
    for days_back in (3, 2):
        from_date = end - dt.timedelta(days=days_back)
        result = run_dbt(settings, "build", env=_from(from_date))
        assert result.returncode == 0, result.stdout[-4000:]
    assert "Unable to do partial parsing" not in result.stdout
    first_as_of = from_date + dt.timedelta(days=1)
    predicate = _last_commit(settings, "customer_features")["operationParameters"]["predicate"]
    assert predicate == f"feature_date >= '{first_as_of}'::date"
    for name in MARTS:
        pd.testing.assert_frame_equal(_mart(settings, name), _mart(dbt_lakehouse, name))
    for name in ("stg_lakehouse__transactions", "stg_lakehouse__fraud_reports"):
        pd.testing.assert_frame_equal(_staging(settings, name), _staging(dbt_lakehouse, name))
    # The same run through --vars works too, but dbt then parses the whole project again.
    result = run_dbt(
        settings, "run", "--select", "customer_features", "--vars", f"{{from_date: {end}}}"
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Unable to do partial parsing" in result.stdout
    pd.testing.assert_frame_equal(
        _mart(settings, "customer_features"), _mart(dbt_lakehouse, "customer_features")
    )


def test_a_daily_run_writes_only_its_day_and_tests_only_the_rows_it_rebuilt(
    dbt_lakehouse, tmp_path
):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    last = settings.sim_end_date
    new_as_of = last + dt.timedelta(days=1)
    # The state before the day's run: the marts end with the day before.
    for name in ("customer_features", "terminal_features"):
        DeltaTable(settings.table_uri("marts", name)).delete(f"feature_date = '{new_as_of}'")
    DeltaTable(settings.table_uri("marts", "labelled_transactions")).delete(f"tx_date = '{last}'")
    # A broken row of an earlier day in the warehouse: the tests of a daily run read only the
    # rows it rebuilt, those of a full run every row.
    with duckdb.connect(str(settings.duckdb_file)) as con:
        con.execute(
            "update staging.stg_lakehouse__transactions set tx_amount = -1 "
            "where transaction_id = (select min(transaction_id) "
            f"from staging.stg_lakehouse__transactions where tx_date < date '{last}')"
        )
    staging_tests = ("test", "--select", "stg_lakehouse__transactions")
    everything = run_dbt(settings, *staging_tests)
    assert everything.returncode != 0
    assert "FAIL 1 accepted_range_stg_lakehouse__transactions_tx_amount__0" in everything.stdout
    assert run_dbt(settings, *staging_tests, env=_from(last)).returncode == 0
    result = run_dbt(settings, "build", env=_from(last))
    assert result.returncode == 0, result.stdout[-4000:]
    # The warehouse kept its earlier days as they were: only the new day was reloaded.
    staged = _staging(settings, "stg_lakehouse__transactions")
    assert (staged["tx_amount"] < 0).sum() == 1
    for name, entities in (
        ("customer_features", settings.sim_customers),
        ("terminal_features", settings.sim_terminals),
    ):
        commit = _last_commit(settings, name)
        # One as-of day added, no earlier file rewritten.
        assert commit["operationMetrics"]["num_added_rows"] == entities
        assert commit["operationMetrics"]["num_removed_files"] == 0
    # The new day's transactions, and those of the days whose reports arrived on it.
    raw = delta.read_table(settings.table_uri("raw", "transactions")).to_pandas()
    reports = delta.read_table(settings.table_uri("raw", "fraud_reports")).to_pandas()
    reported = raw["transaction_id"].isin(reports.query("report_date == @last")["transaction_id"])
    days = {last, *raw.loc[reported, "tx_date"]}
    labelled = _last_commit(settings, "labelled_transactions")
    assert labelled["operationMetrics"]["num_added_rows"] == raw["tx_date"].isin(days).sum()
    for name in MARTS:
        pd.testing.assert_frame_equal(_mart(settings, name), _mart(dbt_lakehouse, name))
    # The same day run again (a retried daily run) writes no row twice, anywhere.
    again = run_dbt(settings, "build", "--exclude-resource-type", "unit_test", env=_from(last))
    assert again.returncode == 0, again.stdout[-4000:]
    for name in MARTS:
        pd.testing.assert_frame_equal(_mart(settings, name), _mart(dbt_lakehouse, name))
    for name in ("stg_lakehouse__transactions", "stg_lakehouse__fraud_reports"):
        rerun, full = _staging(settings, name), _staging(dbt_lakehouse, name)
        assert rerun["transaction_id"].is_unique
        assert rerun["transaction_id"].tolist() == full["transaction_id"].tolist()


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
    expect = {"FRAUDOPS_DBT_TO_DATE": later.isoformat()}
    partitions = ["--select", "stg_lakehouse__transaction_partitions"]
    build = run_dbt(settings, "build", *partitions, env=expect)
    assert build.returncode != 0
    assert "FAIL 1 raw_transactions_reach_the_expected_last_day" in build.stdout
    run = run_dbt(settings, "run", "--select", "+int_calendar__as_of_days", env=expect)
    assert run.returncode != 0
    assert f"raw transactions miss 1 day(s) between {settings.sim_start_date} and {later}" in (
        run.stdout
    )
    # Source freshness measures against the end of that expected day.
    stale = run_dbt(settings, "source", "freshness", env=expect)
    assert stale.returncode != 0
    assert "ERROR STALE freshness of lakehouse.transactions" in stale.stdout
    # The same day given as a dbt var fails the same way.
    build = run_dbt(settings, "build", *partitions, "--vars", f"{{to_date: {later}}}")
    assert "FAIL 1 raw_transactions_reach_the_expected_last_day" in build.stdout
    bad = run_dbt(settings, "build", *partitions, env={"FRAUDOPS_DBT_TO_DATE": "2018-13-45"})
    assert bad.returncode != 0
    assert "FRAUDOPS_DBT_TO_DATE must be a day YYYY-MM-DD" in bad.stdout


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
