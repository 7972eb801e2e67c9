"""The code location loads, and a two-day ingestion run through Dagster writes readable Delta."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fraudops.settings import get_settings
from lakehouse import delta
from orchestration.definitions import build_definitions, defs
from tests.conftest import settings_env

RAW = ["raw_transactions", "raw_fraud_reports", "raw_customers", "raw_terminals"]


@pytest.fixture
def tiny_home(tmp_settings, monkeypatch):
    for key, value in settings_env(tmp_settings).items():
        monkeypatch.setenv(key, value)
    return get_settings()


def test_definitions_load_with_raw_assets_checks_job_and_schedule(tiny_home):
    definitions = build_definitions()
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {f"lakehouse/{name}" for name in RAW} <= keys
    checks = {c.name for c in graph.asset_check_keys}
    assert {"quarantine_rate_below_threshold", "unique_transaction_ids"} <= checks
    assert definitions.resolve_job_def("ingest") is not None
    assert definitions.resolve_schedule_def("daily_ingest") is not None


def test_lazy_definitions_entry_point_loads(tiny_home):
    assert isinstance(defs.load_fn(), dg.Definitions)


def test_two_days_through_dagster_write_readable_delta(tiny_home):
    job = build_definitions().resolve_job_def("ingest")
    first, second = dt.date(2018, 4, 9), dt.date(2018, 4, 10)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: second.isoformat(),
            },
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        materialized = instance.get_latest_materialization_event(
            dg.AssetKey(["lakehouse", "raw_transactions"])
        )
        assert materialized.asset_materialization.partition in {
            first.isoformat(),
            second.isoformat(),
        }

    tx = delta.read_table(tiny_home.table_uri("raw", "transactions")).to_pandas()
    reports = delta.read_table(tiny_home.table_uri("raw", "fraud_reports")).to_pandas()
    assert sorted(tx["tx_date"].unique()) == [first, second]
    assert len(tx) > 0 and tx["transaction_id"].is_unique
    assert set(reports["report_date"].unique()) <= {first, second}
    assert (
        delta.read_table(tiny_home.table_uri("raw", "customers")).num_rows
        == tiny_home.sim_customers
    )


def test_quarantine_check_fails_without_failing_the_run(tiny_home, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_QUARANTINE_FAIL_RATIO", "-1")
    job = build_definitions().resolve_job_def("ingest")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, partition_key="2018-04-09")
    assert result.success
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert failed == {"quarantine_rate_below_threshold"}
