"""The dbt project as Dagster assets: one lineage graph, tests as checks, the daily run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_dbt import get_asset_key_for_model
from deltalake import DeltaTable

from fraudops.environ import settings_env
from fraudops.settings import get_settings
from lakehouse import delta
from orchestration.defs import dbt as dbt_domain
from orchestration.defs import lakehouse
from orchestration.defs.dbt.assets import (
    CUSTOMER_FEATURES_MART,
    LABELLED_TRANSACTIONS_MART,
    TERMINAL_FEATURES_MART,
    FraudopsDbtTranslator,
    build_dbt_assets,
    dbt_vars,
    run_first_day,
    run_last_day,
)
from orchestration.defs.dbt.resources import DBT_PROJECT_DIR, dbt_project, prepare_dbt_project
from orchestration.defs.lakehouse.assets import RAW_TRANSACTIONS
from orchestration.partitions import daily_partitions
from orchestration.resources import SettingsResource
from tests.dbt.conftest import copy_home, mart_state

MARTS = {
    "customer_features": CUSTOMER_FEATURES_MART,
    "terminal_features": TERMINAL_FEATURES_MART,
    "labelled_transactions": LABELLED_TRANSACTIONS_MART,
}


@pytest.fixture(scope="module", autouse=True)
def _current_manifest() -> None:
    """Parse the project first: the graph under test is that of the models as they are now."""
    prepare_dbt_project()


def _definitions() -> dg.Definitions:
    """The lakehouse and dbt domains wired as orchestration/definitions.py wires them."""
    partitions = daily_partitions(get_settings())
    return dg.Definitions.merge(
        lakehouse.build_defs(partitions),
        dbt_domain.build_defs(),
        dg.Definitions(resources={"settings": SettingsResource()}),
    )


def _props(resource_type: str, name: str, fqn: list[str]) -> dict:
    return {"resource_type": resource_type, "name": name, "fqn": fqn, "unique_id": name}


def test_translator_maps_sources_to_raw_assets_and_models_to_their_layer():
    translator = FraudopsDbtTranslator()
    source = _props("source", "transactions", ["fraudops", "lakehouse", "transactions"])
    assert translator.get_asset_key(source) == dg.AssetKey(["lakehouse", "raw_transactions"])
    model = _props("model", "customer_features", ["fraudops", "marts", "customer_features"])
    assert translator.get_asset_key(model) == dg.AssetKey(["marts", "customer_features"])
    assert translator.get_group_name(model) == "marts"
    log = {
        **_props("source", "ingestion_log", ["fraudops", "lakehouse", "ingestion_log"]),
        "meta": {"dagster": {"asset_key": ["lakehouse", "ingestion_log"]}},
    }
    assert translator.get_asset_key(log) == dg.AssetKey(["lakehouse", "ingestion_log"])
    stray = _props("model", "orphan", ["fraudops", "adhoc", "orphan"])
    with pytest.raises(ValueError, match="layer folders"):
        translator.get_asset_key(stray)


def test_runs_from_the_first_day_rebuild_everything_later_ones_are_incremental(tmp_settings):
    first = tmp_settings.sim_start_date
    assert dbt_vars(tmp_settings, first) == {}
    assert dbt_vars(tmp_settings, None) == {}
    later = first + dt.timedelta(days=9)
    assert dbt_vars(tmp_settings, later) == {"from_date": later.isoformat()}


def test_partitioned_runs_expect_the_raw_feeds_to_reach_their_last_day(tmp_settings):
    first = tmp_settings.sim_start_date
    last = first + dt.timedelta(days=12)
    assert dbt_vars(tmp_settings, first, last) == {"to_date": last.isoformat()}
    later = first + dt.timedelta(days=9)
    assert dbt_vars(tmp_settings, later, last) == {
        "from_date": later.isoformat(),
        "to_date": last.isoformat(),
    }


def test_the_first_and_last_days_come_from_the_partition_or_the_range():
    one_day = dg.build_asset_context(partition_key="2018-05-02")
    assert run_first_day(one_day) == run_last_day(one_day) == dt.date(2018, 5, 2)
    days = dg.build_asset_context(
        partition_key_range=dg.PartitionKeyRange("2018-04-03", "2018-09-30")
    )
    assert run_first_day(days) == dt.date(2018, 4, 3)
    assert run_last_day(days) == dt.date(2018, 9, 30)
    assert run_first_day(dg.build_asset_context()) is None
    assert run_last_day(dg.build_asset_context()) is None


def test_the_mart_keys_other_domains_import_are_those_of_the_manifest_models():
    models = build_dbt_assets(dbt_project())
    for name, key in MARTS.items():
        assert get_asset_key_for_model([models], name) == key


def _model_names(project_dir: Path, monkeypatch, dev: bool) -> set[str]:
    """The dbt models of the manifest that loading ``project_dir`` leaves (dev: dagster dev)."""
    if dev:
        monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    else:
        monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    project = dbt_project(project_dir)
    nodes = json.loads(project.manifest_path.read_text())["nodes"].values()
    return {node["name"] for node in nodes if node["resource_type"] == "model"}


def test_the_manifest_is_parsed_in_a_fresh_clone_and_on_every_dagster_dev_load(
    tmp_path, monkeypatch
):
    # A fresh clone: the project's files without the generated target/.
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    assert "customer_features" in _model_names(project_dir, monkeypatch, dev=False)
    (project_dir / "models" / "marts" / "new_mart.sql").write_text("select 1 as id\n")
    # Outside dagster dev the manifest is the prepared one; dagster dev parses every load.
    assert "new_mart" not in _model_names(project_dir, monkeypatch, dev=False)
    assert "new_mart" in _model_names(project_dir, monkeypatch, dev=True)


@pytest.fixture
def daily_home(dbt_lakehouse, tmp_path, monkeypatch):
    """A built copy of the dbt lakehouse whose last day has not been ingested yet."""
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    last = settings.sim_end_date
    DeltaTable(settings.table_uri("raw", "transactions")).delete(f"tx_date = '{last}'")
    DeltaTable(settings.table_uri("raw", "fraud_reports")).delete(f"report_date = '{last}'")
    for name in ("customer_features", "terminal_features"):
        uri = settings.table_uri("marts", name)
        DeltaTable(uri).delete(f"feature_date = '{last + dt.timedelta(days=1)}'")
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    return settings


def test_code_location_has_one_lineage_graph_with_dbt_tests_as_checks(daily_home):
    definitions = _definitions()
    graph = definitions.resolve_asset_graph()
    staging = graph.get(dg.AssetKey(["staging", "stg_lakehouse__transactions"]))
    assert RAW_TRANSACTIONS in staging.parent_keys
    for key in MARTS.values():
        node = graph.get(key)
        assert node.group_name == "marts"
        assert "delta" in node.kinds
    checks = {(c.asset_key.path[-1], c.name) for c in graph.asset_check_keys}
    assert (
        "customer_features",
        "unique_combination_of_columns_customer_features_customer_id__feature_timestamp",
    ) in checks
    assert (
        "terminal_features",
        "assert_terminal_risk_uses_only_labels_older_than_the_delay",
    ) in checks
    assert definitions.resolve_job_def("transform") is not None
    daily = definitions.resolve_schedule_def("daily_ingest")
    assert daily.job_name == "daily"


def test_daily_job_ingests_the_new_day_then_builds_its_features(daily_home, dbt_lakehouse):
    last = daily_home.sim_end_date
    job = _definitions().resolve_job_def("daily")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=last.isoformat(), instance=instance)
        assert result.success
        checks = result.get_asset_check_evaluations()
        mart_checks = [c for c in checks if c.asset_key.path[0] == "marts"]
        assert mart_checks and all(c.passed for c in mart_checks)
        raw = instance.get_latest_materialization_event(RAW_TRANSACTIONS).asset_materialization
        assert raw.partition == last.isoformat()
        materialization = instance.get_latest_materialization_event(
            CUSTOMER_FEATURES_MART
        ).asset_materialization
        assert materialization.metadata["dagster/row_count"].value == (
            daily_home.sim_customers * daily_home.sim_days
        )
    for name, key in (("customer_features", "customer_id"), ("terminal_features", "terminal_id")):
        got = delta.read_table(daily_home.table_uri("marts", name)).to_pandas()
        want = delta.read_table(dbt_lakehouse.table_uri("marts", name)).to_pandas()
        assert got["feature_date"].max() == last + dt.timedelta(days=1)
        order = [key, "feature_date"]
        pd.testing.assert_frame_equal(
            got.sort_values(order, ignore_index=True), want.sort_values(order, ignore_index=True)
        )


def test_a_failed_transform_run_writes_and_materializes_no_mart(
    dbt_lakehouse, tmp_path, monkeypatch
):
    settings = copy_home(dbt_lakehouse, tmp_path / "var")
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    # A customer lost: dbt still builds the marts that do not read the customers (their
    # Outputs arrive), but a test fails, so it commits none of them.
    raw = DeltaTable(settings.table_uri("raw", "transactions"))
    customer = int(raw.to_pandas(columns=["customer_id"])["customer_id"].iloc[0])
    DeltaTable(settings.table_uri("raw", "customers")).delete(f"customer_id = {customer}")
    before = mart_state(settings)
    job = _definitions().resolve_job_def("transform")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        for key in MARTS.values():
            assert instance.get_latest_materialization_event(key) is None
        # The checks of the rejected marts are still reported.
        failed = {c.asset_key for c in result.get_asset_check_evaluations() if not c.passed}
        assert LABELLED_TRANSACTIONS_MART in failed
    assert mart_state(settings) == before
