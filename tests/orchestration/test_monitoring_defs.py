"""The monitoring domain in the code location: the daily job runs the whole day, the lagged
performance waits for its labels, and the monitoring assets run the real chain through Dagster.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import warnings
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from fraudops.catalog import TRAINING_SET
from fraudops.environ import settings_env
from fraudops.settings import Settings, get_settings
from lakehouse.simulator import DriftScenario
from ml import pipeline, registry, tracking
from ml.dataset import load_training_set
from ml.metrics import classification_metrics
from ml.reference_set import build_reference_training_set
from ml.train import train_xgboost
from monitoring.report import load_drift_report
from orchestration.definitions import build_definitions
from orchestration.defs import lakehouse, monitoring, training
from orchestration.defs.dbt.assets import CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART
from orchestration.defs.features.assets import FEAST_REGISTRY, ONLINE_FEATURES
from orchestration.defs.lakehouse.assets import (
    RAW_CUSTOMERS,
    RAW_FRAUD_REPORTS,
    RAW_TERMINALS,
    RAW_TRANSACTIONS,
)
from orchestration.defs.lakehouse.schedules import DAILY_JOB, DAY_AFTER_TRANSFORM
from orchestration.defs.monitoring import checks
from orchestration.defs.monitoring.assets import (
    DRIFT_REPORT,
    MODEL_PERFORMANCE,
    PRODUCTION_PROFILE,
    REFERENCE_PROFILE,
)
from orchestration.defs.monitoring.schedules import MODEL_PERFORMANCE_JOB
from orchestration.defs.monitoring.sensors import DRIFT_SENSOR, build_sensors
from orchestration.defs.serving.assets import BATCH_SCORES
from orchestration.defs.training.schedules import RETRAINING_JOB
from orchestration.partitions import daily_partitions, partition_range_tags
from orchestration.resources import SettingsResource
from tests.conftest import TINY
from tests.monitoring.world import serve

PROTOCOL = {"train_days": 12, "test_days": 7, "known_card_memory_days": 0}
XGB_PARAMS = {"max_depth": 3, "learning_rate": 0.3, "num_boost_round": 20}
# Two served days of the tiny simulation whose labels are known (reports run to 2018-05-15).
STABLE, SHIFTED = dt.date(2018, 5, 1), dt.date(2018, 5, 2)
SPENDING = DriftScenario("spending_shift", SHIFTED, None, intensity=1.0)


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAUDOPS_HOME", tempfile.mkdtemp())
        return build_definitions()


def test_the_monitoring_domain_loads_without_beta_warnings(tiny_home):
    # The daemon and every run load the code location: Dagster's beta notices would be noise
    # in each of their logs (the test settings silence them, so record them here).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitoring.build_defs(daily_partitions(tiny_home), tiny_home.label_delay_days)
    assert [str(w.message) for w in caught if issubclass(w.category, dg.BetaWarning)] == []


def test_definitions_load_and_every_job_resolves(definitions):
    dg.Definitions.validate_loadable(definitions)
    for job in definitions.jobs:
        assert definitions.resolve_job_def(job.name).name == job.name
    graph = definitions.resolve_asset_graph()
    assert {REFERENCE_PROFILE, PRODUCTION_PROFILE, DRIFT_REPORT, MODEL_PERFORMANCE} <= (
        graph.materializable_asset_keys
    )
    assert {(c.asset_key, c.name) for c in graph.asset_check_keys} >= {
        (PRODUCTION_PROFILE, checks.QUALITY),
        (DRIFT_REPORT, checks.DRIFT),
        (MODEL_PERFORMANCE, checks.PERFORMANCE),
    }
    repository = definitions.get_repository_def()
    names = {s.name for s in repository.sensor_defs}
    assert {"drift_retraining", "performance_retraining", "monitoring_automation"} <= names
    assert repository.get_sensor_def(DRIFT_SENSOR).job_name == RETRAINING_JOB


def test_the_daily_job_holds_every_step_of_the_day(definitions):
    job = definitions.resolve_job_def(DAILY_JOB)
    keys = job.asset_layer.selected_asset_keys
    day = {
        RAW_CUSTOMERS,
        RAW_TERMINALS,
        RAW_TRANSACTIONS,
        RAW_FRAUD_REPORTS,
        CUSTOMER_FEATURES_MART,
        TERMINAL_FEATURES_MART,
        FEAST_REGISTRY,
        ONLINE_FEATURES,
        BATCH_SCORES,
        REFERENCE_PROFILE,
        PRODUCTION_PROFILE,
        DRIFT_REPORT,
    }
    assert day <= keys
    # The performance of a day waits label_delay_days for its labels: not part of its run.
    assert MODEL_PERFORMANCE not in keys
    # Partitioned (the lakehouse's days) and unpartitioned assets share the one job.
    assert job.partitions_def == daily_partitions(get_settings())
    graph = definitions.resolve_asset_graph()
    assert graph.get(ONLINE_FEATURES).partitions_def is None
    assert graph.get(PRODUCTION_PROFILE).partitions_def == job.partitions_def
    # Each key path of the selection names one asset of the code location.
    assert DAY_AFTER_TRANSFORM.resolve(graph) == {
        FEAST_REGISTRY,
        ONLINE_FEATURES,
        BATCH_SCORES,
        REFERENCE_PROFILE,
        PRODUCTION_PROFILE,
        DRIFT_REPORT,
    }
    # Lineage orders the run: the profile after the day's ingestion, drift after both profiles.
    assert RAW_TRANSACTIONS in graph.get(PRODUCTION_PROFILE).parent_keys
    assert {PRODUCTION_PROFILE, REFERENCE_PROFILE} <= graph.get(DRIFT_REPORT).parent_keys
    schedule = definitions.resolve_schedule_def("daily_ingest")
    assert schedule.job_name == DAILY_JOB
    assert definitions.resolve_job_def(MODEL_PERFORMANCE_JOB).partitions_def == job.partitions_def


def _automation_defs(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    return dg.Definitions.merge(
        lakehouse.build_defs(partitions),
        monitoring.build_defs(partitions, settings.label_delay_days),
        training.build_defs(),  # the job the retraining sensors target
        dg.Definitions(resources={"settings": SettingsResource()}),
    )


def _materialized(instance, key: dg.AssetKey, *days: dt.date) -> None:
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=key, partition=day.isoformat())
        )


def test_performance_is_requested_when_the_labels_of_a_day_arrive(tiny_home):
    defs = _automation_defs(tiny_home)
    delay = dt.timedelta(days=tiny_home.label_delay_days)
    first, second, silent = dt.date(2018, 4, 10), dt.date(2018, 4, 11), dt.date(2018, 4, 12)
    with dg.instance_for_test() as instance:
        _materialized(instance, PRODUCTION_PROFILE, first, second)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert result.total_requested == 0
        # The reports of first + delay arrive: first's labels are complete, second's are not.
        _materialized(instance, RAW_FRAUD_REPORTS, first, first + delay)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=result.cursor
        )
        assert result.get_requested_partitions(MODEL_PERFORMANCE) == {first.isoformat()}
        # A day without traffic (no production profile) is never evaluated.
        _materialized(instance, RAW_FRAUD_REPORTS, second + delay, silent + delay)
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=result.cursor
        )
        assert result.get_requested_partitions(MODEL_PERFORMANCE) == {second.isoformat()}
        # Nothing new arrived: nothing is requested twice.
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=result.cursor
        )
        assert result.total_requested == 0


def train_champion(settings: Settings) -> str:
    """An XGBoost version logged and registered the way the retraining job records one (run
    params of the training window, test metrics, pyfunc), made champion."""
    frame = build_reference_training_set(settings)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_deltalake(TRAINING_SET.uri(settings), table, mode="overwrite", partition_by=["tx_date"])
    data = load_training_set(settings)
    splits = pipeline.make_splits(data.frame, settings)
    model = train_xgboost(splits.train, XGB_PARAMS, settings.train_seed)
    client = tracking.configure(settings)
    with mlflow.start_run(run_name="xgboost-candidate") as run:
        mlflow.log_params({"data_version": data.version, **splits.test.as_params("window_")})
        with tempfile.TemporaryDirectory() as tmp:
            uri = tracking.log_scoring_model(model, splits.train, Path(tmp))
        metrics = classification_metrics(splits.test_frame, model.predict_proba(splits.test_frame))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    client.create_registered_model(settings.model_name)
    version = str(client.create_model_version(settings.model_name, uri, run.info.run_id).version)
    registry.move_champion(client, settings.model_name, version, "orchestration tests")
    return version


@pytest.fixture(scope="module")
def served(tiny_lakehouse, tmp_path_factory):
    """A copy of the tiny lakehouse, a champion, and two days of traffic (the second with
    doubled amounts) in the prediction log; the settings exported for the Dagster runs."""
    home = tmp_path_factory.mktemp("monitored") / "var"
    settings = get_settings(home=home, monitoring_workers=1, **TINY, **PROTOCOL)
    shutil.copytree(tiny_lakehouse.settings.lakehouse_root, settings.lakehouse_root)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings_env(settings).items():
            patch.setenv(key, value)
        version = train_champion(settings)
        serve(settings, (), [STABLE])
        serve(settings, (SPENDING,), [SHIFTED])
        yield settings, version


def test_the_monitoring_chain_runs_in_one_run_and_feeds_the_drift_sensor(served, definitions):
    settings, version = served
    daily = definitions.resolve_job_def(DAILY_JOB)
    with dg.instance_for_test() as instance:
        # One run over both days (a single-run backfill): the unpartitioned reference, then the
        # two partitioned assets; the rest of the daily job is not selected.
        result = daily.execute_in_process(
            instance=instance,
            asset_selection=[REFERENCE_PROFILE, PRODUCTION_PROFILE, DRIFT_REPORT],
            tags=partition_range_tags(STABLE, SHIFTED),
        )
        assert result.success
        events = {
            (e.asset_key, e.partition): e.materialization
            for e in result.get_asset_materialization_events()
        }
        reference = events[REFERENCE_PROFILE, None]
        assert reference.metadata["model_version"].value == version
        assert instance.get_materialized_partitions(DRIFT_REPORT) == {
            STABLE.isoformat(),
            SHIFTED.isoformat(),
        }
        # Each partition carries its own day's report, and the run's table of both days.
        for day in (STABLE, SHIFTED):
            drift = events[DRIFT_REPORT, day.isoformat()].metadata
            report = load_drift_report(settings, day)
            assert drift["day"].value == day.isoformat()
            assert drift["drift_table"].value == report.markdown
            assert drift["html_report"].value == str(report.html_path)
            assert Path(drift["plot_score_histogram"].value).exists()
            assert drift["key_drift"].value == report.key_drift
            assert drift["dagster/row_count"].value == report.rows
            assert str(day) in drift["run_days"].value
            profile = events[PRODUCTION_PROFILE, day.isoformat()].metadata
            assert profile["dagster/row_count"].value == report.rows
        shifted = load_drift_report(settings, SHIFTED)
        # Doubled amounts: the amount, a key feature, drifts further than on the stable day
        # (a tiny day of ~150 rows drifts on other columns too).
        stable = load_drift_report(settings, STABLE)
        assert "tx_amount" in shifted.key_drift
        assert shifted.scores["tx_amount"] > stable.scores["tx_amount"]
        by_check = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert by_check[checks.DRIFT].severity == dg.AssetCheckSeverity.WARN
        assert not by_check[checks.DRIFT].passed
        assert by_check[checks.QUALITY].severity == dg.AssetCheckSeverity.ERROR

        # The drift sensor reads that report and requests the retraining job once.
        sensor = next(s for s in build_sensors() if s.name == DRIFT_SENSOR)
        context = dg.build_sensor_context(
            instance=instance, resources={"settings": SettingsResource()}
        )
        assert by_check[checks.QUALITY].passed and shifted.should_retrain
        (request,) = sensor.evaluate_tick(context).run_requests
        assert request.run_key == f"drift:{SHIFTED.isoformat()}"
        assert request.tags["fraudops/reference_version"] == version


def test_model_performance_of_labelled_days_and_not_before(served, definitions):
    _, version = served
    job = definitions.resolve_job_def(MODEL_PERFORMANCE_JOB)
    with dg.instance_for_test() as instance:
        early = job.execute_in_process(
            instance=instance, partition_key="2018-05-10", raise_on_error=False
        )
        assert not early.success
        assert instance.get_materialized_partitions(MODEL_PERFORMANCE) == set()
        result = job.execute_in_process(
            instance=instance, tags=partition_range_tags(STABLE, SHIFTED)
        )
        assert result.success
        by_day = {
            e.partition: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert set(by_day) == {STABLE.isoformat(), SHIFTED.isoformat()}
        metadata = by_day[SHIFTED.isoformat()]
        assert metadata["day"].value == SHIFTED.isoformat()
        assert metadata["model_version"].value == version
        assert by_day[STABLE.isoformat()]["day"].value == STABLE.isoformat()
        assert set(metadata["champion_test"].value) == {
            "average_precision",
            "card_precision_at_100",
        }
        for name in ("brier", "decline_precision", "review_recall", "card_precision_at_100"):
            assert name in metadata
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == checks.PERFORMANCE
        assert check.severity == dg.AssetCheckSeverity.ERROR


def test_a_day_without_traffic_is_not_profiled_and_skips_its_drift_report(served, definitions):
    daily = definitions.resolve_job_def(DAILY_JOB)
    with dg.instance_for_test() as instance:
        result = daily.execute_in_process(
            instance=instance,
            asset_selection=[PRODUCTION_PROFILE, DRIFT_REPORT],
            partition_key="2018-05-05",  # the service scored no transaction of that day
        )
        assert result.success
        assert result.get_asset_materialization_events() == []
        skipped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}
        assert skipped == {DRIFT_REPORT.to_python_identifier()}
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == checks.QUALITY and not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["days_without_traffic"].value == ["2018-05-05"]
