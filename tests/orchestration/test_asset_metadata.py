"""What the assets tell a user: per-partition row counts, lineage, code versions, checks, costs."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from mlflow.tracking import MlflowClient

from fraudops.catalog import BATCH_SCORES as BATCH_SCORES_TABLE
from fraudops.catalog import RAW_TRANSACTIONS as RAW_TRANSACTIONS_TABLE
from fraudops.environ import settings_env
from fraudops.settings import get_settings
from lakehouse import delta
from ml.reference_set import build_reference_training_set
from orchestration.definitions import build_definitions
from orchestration.defs import dbt as dbt_domain
from orchestration.defs import training
from orchestration.defs.features.assets import TRAINING_SET
from orchestration.defs.features.checks import (
    TRAINING_BALANCE,
    TRAINING_NULLS,
    TRAINING_ROWS,
    training_set_check_results,
)
from orchestration.defs.lakehouse.assets import RAW_FRAUD_REPORTS, RAW_TRANSACTIONS
from orchestration.defs.lakehouse.metadata import code_version
from orchestration.defs.serving.assets import BATCH_SCORES, build_assets
from orchestration.defs.serving.checks import ROW_COUNT, SCORE_RANGE, batch_score_check_results
from orchestration.defs.training.assets import (
    CHAMPION,
    MODEL_EVALUATION,
    REGISTERED_MODEL,
    TORCH_CANDIDATE,
    XGBOOST_CANDIDATE,
)
from orchestration.defs.training.checks import CANDIDATE_AP, candidate_check_result
from orchestration.partitions import daily_partitions, partition_range_tags
from orchestration.resources import SettingsResource
from tests.ml.conftest import TINY_PROTOCOL, make_ml_settings
from tests.serving import fixtures as fx

# The retraining run up to the gate (the fallback model after it has its own tests).
GATED = [XGBOOST_CANDIDATE, TORCH_CANDIDATE, MODEL_EVALUATION, REGISTERED_MODEL, CHAMPION]
SCORED_DAY = dt.date(2018, 5, 10)


def _checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in result.get_asset_check_evaluations()
    }


def test_each_daily_partition_of_a_single_run_records_its_own_row_count(tiny_home):
    first, last = dt.date(2018, 4, 9), dt.date(2018, 4, 11)
    job = build_definitions().resolve_job_def("ingest")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, tags=partition_range_tags(first, last))
    assert result.success
    for key, column in ((RAW_TRANSACTIONS, "tx_date"), (RAW_FRAUD_REPORTS, "report_date")):
        table = "transactions" if key == RAW_TRANSACTIONS else "fraud_reports"
        counts = delta.partition_row_counts(tiny_home.table_uri("raw", table), column)
        events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
        per_partition = {
            e.materialization.partition: e.materialization.metadata["dagster/row_count"].value
            for e in events
        }
        assert per_partition == {d.isoformat(): n for d, n in counts.items()}
        assert len(set(per_partition.values())) > 1  # the days differ, so no shared total
        run_rows = {e.materialization.metadata["run_rows"].value for e in events}
        assert run_rows == {sum(counts.values())}


def test_the_graph_links_the_champion_to_the_batch_scores_with_versions_schemas_and_checks(
    tiny_home,
):
    graph = build_definitions().resolve_asset_graph()
    assert CHAMPION in graph.get(BATCH_SCORES).parent_keys
    versioned = [
        *(k for k in graph.get_all_asset_keys() if k.path[0] == "lakehouse"),
        *GATED,
        BATCH_SCORES,
        TRAINING_SET,
    ]
    for key in versioned:
        node = graph.get(key)
        if node.is_materializable:
            assert node.code_version, key
    for key in (RAW_TRANSACTIONS, RAW_FRAUD_REPORTS, TRAINING_SET, BATCH_SCORES):
        schema = graph.get(key).metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema) and schema.columns, key
    checks = {(c.asset_key, c.name) for c in graph.asset_check_keys}
    for name in (TRAINING_ROWS, TRAINING_BALANCE, TRAINING_NULLS):
        assert (TRAINING_SET, name) in checks
    assert (XGBOOST_CANDIDATE, CANDIDATE_AP) in checks
    assert (TORCH_CANDIDATE, CANDIDATE_AP) in checks
    assert {(BATCH_SCORES, SCORE_RANGE), (BATCH_SCORES, ROW_COUNT)} <= checks
    # The code version follows the source of the modules named.
    assert code_version("ml") == code_version("ml") != code_version("serving.batch")


def test_training_set_checks_pass_on_the_tiny_set_and_fail_on_broken_ones(tiny_lakehouse):
    frame = build_reference_training_set(tiny_lakehouse.settings)
    settings = get_settings()
    assert all(r.passed for r in training_set_check_results(frame, settings))

    def failed(broken) -> set[str]:
        return {r.check_name for r in training_set_check_results(broken, settings) if not r.passed}

    with_null = frame.copy()
    with_null.loc[3, "terminal_id_risk_7day_window"] = np.nan
    assert failed(with_null) == {TRAINING_NULLS}
    assert failed(frame.assign(is_fraud=0)) == {TRAINING_BALANCE}
    assert failed(frame.head(500)) == {TRAINING_ROWS}


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, tiny_lakehouse):
    """A tiny retraining run through Dagster up to the gate, with the raw lakehouse beside it."""
    home = tmp_path_factory.mktemp("metadata") / "var"
    shutil.copytree(tiny_lakehouse.settings.home / "lakehouse", home / "lakehouse")
    frame = build_reference_training_set(tiny_lakehouse.settings)
    settings = make_ml_settings(home, tiny_lakehouse.settings, frame)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings_env(settings).items():
            patch.setenv(key, value)
        for key, value in TINY_PROTOCOL.items():
            patch.setenv(f"FRAUDOPS_{key.upper()}", str(value))
        defs = dg.Definitions.merge(
            training.build_defs(), dg.Definitions(resources={"settings": SettingsResource()})
        )
        result = defs.resolve_job_def("retraining").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), asset_selection=GATED
        )
    assert result.success
    return settings, result


def test_retraining_reports_checks_tables_and_what_each_step_cost(retrained):
    settings, result = retrained
    checks = _checks(result)
    for key in (XGBOOST_CANDIDATE, TORCH_CANDIDATE):
        assert checks[(key.to_user_string(), CANDIDATE_AP)].passed
    metadata = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    evaluation = metadata[MODEL_EVALUATION]
    for kind in ("xgboost", "torch"):
        table = evaluation[f"metrics_{kind}"].value
        assert table.startswith(f"| metric | {kind} | amount rule |")
        assert "| average_precision |" in table
    for key in (XGBOOST_CANDIDATE, TORCH_CANDIDATE, MODEL_EVALUATION, REGISTERED_MODEL):
        assert metadata[key]["cost_wall_seconds"].value > 0
        assert metadata[key]["cost_peak_rss_mib"].value > 0
    gate = metadata[CHAMPION]
    steps = [metadata[k]["cost_cpu_seconds"].value for k in GATED]
    assert gate["retraining_cpu_seconds"].value == pytest.approx(sum(steps), abs=0.01)
    assert gate["retraining_wall_seconds"].value >= max(
        metadata[k]["cost_wall_seconds"].value for k in GATED
    )
    assert gate["retraining_rows"].value == metadata[XGBOOST_CANDIDATE]["cost_rows"].value
    assert "whole retraining" in gate["retraining_cost"].value
    assert gate["backtest"].value.startswith("no logged traffic")

    # The same figures are MLflow metrics: each candidate's on its run, the whole on the
    # challenger's.
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    xgb_run = client.get_run(metadata[XGBOOST_CANDIDATE]["mlflow_run_id"].value).data.metrics
    assert xgb_run["cost_rows"] == metadata[XGBOOST_CANDIDATE]["cost_rows"].value
    version = metadata[REGISTERED_MODEL]["challenger_version"].value
    challenger = client.get_run(client.get_model_version(settings.model_name, version).run_id)
    assert challenger.data.metrics["retraining_cpu_seconds"] == pytest.approx(
        gate["retraining_cpu_seconds"].value
    )

    # A floor above the candidate's validation AP fails its check, on the same candidate.
    candidate = result.output_for_node(XGBOOST_CANDIDATE.to_python_identifier())
    strict = settings.model_copy(update={"promotion_min_ap": 0.999})
    assert candidate_check_result(candidate, settings).passed
    assert not candidate_check_result(candidate, strict).passed


def test_batch_scores_report_per_day_counts_a_histogram_and_their_checks(retrained, tiny_lakehouse):
    settings, _ = retrained
    world = fx.build_world(tiny_lakehouse.settings)
    for name, features in (
        ("customer_features", world.customer_features),
        ("terminal_features", world.terminal_features),
    ):
        mart = features.assign(feature_date=features["feature_timestamp"].dt.date)
        delta.overwrite(settings.table_uri("marts", name), pa.Table.from_pandas(mart))
    days = [SCORED_DAY, SCORED_DAY + dt.timedelta(days=1)]
    result = dg.materialize(
        build_assets(daily_partitions(settings)),
        tags=partition_range_tags(*days),
        resources={"settings": SettingsResource(home=str(settings.home))},
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    raw = delta.partition_row_counts(RAW_TRANSACTIONS_TABLE.uri(settings), "tx_date")
    events = result.get_asset_materialization_events()
    assert {
        e.materialization.partition: e.materialization.metadata["dagster/row_count"].value
        for e in events
    } == {d.isoformat(): raw[d] for d in days}
    histogram = events[0].materialization.metadata["score_distribution"].value
    assert histogram.startswith("| range | rows |")
    bins = histogram.splitlines()[2:]
    assert sum(int(line.split("|")[2].replace(",", "")) for line in bins) == sum(
        raw[d] for d in days
    )

    # The checks read the table: a lost row and an out-of-range score both show.
    uri = BATCH_SCORES_TABLE.uri(settings)
    day = delta.read_table(uri, filters=[("tx_date", "=", SCORED_DAY)])
    scores = day.column("score").to_numpy().copy()
    scores[0] = 1.5
    broken = day.set_column(day.schema.get_field_index("score"), "score", pa.array(scores))
    delta.replace_partitions(uri, broken.slice(0, day.num_rows - 1), "tx_date", [SCORED_DAY])
    failed = {r.check_name for r in batch_score_check_results(settings, days) if not r.passed}
    assert failed == {SCORE_RANGE, ROW_COUNT}
    assert pc.max(broken.column("score")).as_py() == 1.5


def test_a_failed_dbt_run_shows_no_ansi_escapes(tiny_home):
    # No raw tables in this home: the first staging model fails to build.
    defs = dg.Definitions.merge(
        dbt_domain.build_defs(), dg.Definitions(resources={"settings": SettingsResource()})
    )
    model = dg.AssetKey(["staging", "stg_lakehouse__customers"])
    result = defs.resolve_job_def("transform").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=[model], raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    text = error.to_string() + "".join(e.message or "" for e in result.all_events)
    assert "ERROR creating sql table model staging.stg_lakehouse__customers" in text
    assert "\x1b[" not in text
