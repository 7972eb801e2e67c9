"""The code location loads, and a two-day ingestion run through Dagster writes readable Delta."""

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq

from lakehouse import delta
from lakehouse.source import extract_path
from orchestration.definitions import build_definitions, defs
from orchestration.defs.lakehouse.assets import INGESTION_LOG, RAW_TRANSACTIONS
from orchestration.defs.monitoring.assets import PREDICTION_LOG
from orchestration.defs.serving.assets import BATCH_SCORES
from orchestration.partitions import partition_range_tags

RAW = ["raw_transactions", "raw_fraud_reports", "raw_customers", "raw_terminals"]


def test_definitions_load_with_raw_assets_checks_job_and_schedule(tiny_home):
    definitions = build_definitions()
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {f"lakehouse/{name}" for name in RAW} <= keys
    checks = {c.name for c in graph.asset_check_keys}
    assert {"quarantine_rate_below_threshold", "unique_transaction_ids"} <= checks
    assert definitions.resolve_job_def("ingest") is not None
    assert definitions.resolve_schedule_def("daily_ingest") is not None


def test_every_dependency_is_an_asset_of_the_code_location(tiny_home):
    # A key spelled differently in two domains would show up as an external, unbuildable asset.
    graph = build_definitions().resolve_asset_graph()
    parents = {key for node in graph.asset_nodes for key in node.parent_keys}
    # The ingestion log is the one declared table the feed assets write on the side.
    assert parents - graph.materializable_asset_keys == {INGESTION_LOG, PREDICTION_LOG}
    scores = graph.get(BATCH_SCORES)
    assert RAW_TRANSACTIONS in scores.parent_keys
    assert {p.path[0] for p in scores.parent_keys} == {"lakehouse", "marts", "ml"}


def test_lazy_definitions_entry_point_loads(tiny_home):
    assert isinstance(defs.load_fn(), dg.Definitions)


def test_two_days_through_dagster_write_readable_delta(tiny_home):
    job = build_definitions().resolve_job_def("ingest")
    first, second = dt.date(2018, 4, 9), dt.date(2018, 4, 10)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags=partition_range_tags(first, second),
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        materialized = instance.get_latest_materialization_event(RAW_TRANSACTIONS)
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


def _force(flag: bool) -> dict:
    ops = ("lakehouse__raw_transactions", "lakehouse__raw_fraud_reports")
    return {"ops": {op: {"config": {"force": flag}} for op in ops}}


def test_the_volume_guard_refuses_a_drop_unless_forced_and_the_check_flags_it(tiny_home):
    job = build_definitions().resolve_job_def("ingest")
    day = dt.date(2018, 4, 8)
    with dg.instance_for_test() as instance:
        job.execute_in_process(
            instance=instance, tags=partition_range_tags(dt.date(2018, 4, 2), day)
        )
        before = delta.read_table(tiny_home.table_uri("raw", "transactions"), ["tx_date"])
        # The source re-delivers the day as a valid extract with no rows.
        path = extract_path(tiny_home.landing_path, "transactions", day)
        pq.write_table(pq.read_table(path).schema.empty_table(), path)
        refused = job.execute_in_process(
            instance=instance,
            partition_key=day.isoformat(),
            run_config=_force(False),
            raise_on_error=False,
        )
        kept = delta.read_table(tiny_home.table_uri("raw", "transactions"), ["tx_date"])
        forced = job.execute_in_process(
            instance=instance, partition_key=day.isoformat(), run_config=_force(True)
        )
    assert not refused.success
    assert kept.num_rows == before.num_rows  # the refused day kept its rows
    assert forced.success
    volume = [
        c
        for c in forced.get_asset_check_evaluations()
        if c.check_name == "daily_volume_near_trailing_median" and c.asset_key == RAW_TRANSACTIONS
    ]
    assert len(volume) == 1 and not volume[0].passed
    assert volume[0].severity == dg.AssetCheckSeverity.WARN
    assert volume[0].metadata["days_below"].value == [day.isoformat()]
