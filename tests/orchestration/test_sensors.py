"""The retraining sensors on a real Dagster instance: one request per (reason, day), a shared
cooldown, a cursor that survives, no retraining on broken data.

The drift reports and performance figures are written as the monitoring package stores them
(its dataclasses, ``to_dict`` and ``monitoring.store``), with chosen scores, so that every
branch is reached with known figures; tests/orchestration/test_monitoring_defs.py runs the
same sensor on reports the real chain wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import dagster as dg
import pytest

from fraudops.settings import Settings
from monitoring import store
from monitoring.drift import DRIFT_COLUMNS, ColumnDrift, ranked, threshold_for
from monitoring.performance import DayPerformance
from monitoring.report import SUMMARY, DriftReport, markdown_table
from orchestration.defs.monitoring.assets import DRIFT_REPORT
from orchestration.defs.monitoring.sensors import (
    AUTOMATION_SENSOR,
    DAY_TAG,
    DRIFT_SENSOR,
    PERFORMANCE_SENSOR,
    REASON_TAG,
    RetrainCursor,
    build_sensors,
)
from orchestration.defs.training.schedules import RETRAINING_JOB
from orchestration.resources import SettingsResource

DAY = dt.date(2018, 5, 10)
QUIET = {column: 0.05 for column in DRIFT_COLUMNS}


@pytest.fixture(scope="module")
def sensors() -> dict[str, dg.SensorDefinition]:
    return {sensor.name: sensor for sensor in build_sensors()}


@pytest.fixture(autouse=True)
def request_on_the_first_bad_day(tiny_home, monkeypatch):
    """Most tests here are about one bad day: the wait until a retrain can learn it is off,
    except in the tests of that wait, which turn it back on."""
    monkeypatch.setenv("FRAUDOPS_PERFORMANCE_WAIT_UNTIL_LEARNABLE", "false")


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(sensor: dg.SensorDefinition, instance, cursor: str | None = None):
    """One evaluation as the daemon makes it: a fresh context holding only the cursor."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": SettingsResource()}
    )
    return sensor.evaluate_tick(context)


def write_report(
    settings: Settings, day: dt.date, scores: dict[str, float], quality: tuple[str, ...] = ()
) -> DriftReport:
    """Store a drift report of ``day`` with these scores, the way write_drift_report does."""
    drifts = ranked(
        {c: ColumnDrift(c, "hellinger", s, threshold_for(settings, c)) for c, s in scores.items()}
    )
    keys = set(settings.drift_key_features)
    drifted = [d.column for d in drifts if d.drifted]
    folder = store.report_folder(settings, day)
    report = DriftReport(
        day=day,
        reference_version="3",
        rows=4_200,
        scores={d.column: d.score for d in drifts},
        algorithms={d.column: d.algorithm for d in drifts},
        thresholds={d.column: d.threshold for d in drifts},
        drifted=drifted,
        key_drift=[c for c in drifted if c in keys],
        quality_failures=list(quality),
        html_path=folder / "report.html",
        markdown=markdown_table(drifts, keys),
    )
    store.write_json(folder / SUMMARY, report.to_dict())
    return report


def write_performance(
    settings: Settings,
    day: dt.date,
    ap: float,
    frauds: int = 40,
    scenarios: dict[str, tuple[float, int]] | None = None,
) -> None:
    """Store the figures of ``day`` for a served version whose test AP was 0.80; ``scenarios``
    maps a scenario to its (recall, frauds)."""
    scenarios = scenarios or {"scenario_1": (1.0, frauds)}
    figures = DayPerformance(
        day=day,
        rows=5_000,
        frauds=frauds,
        model_version="3",
        average_precision=ap,
        card_precision_at_100=0.3,
        brier=0.01,
        decline_precision=0.9,
        decline_recall=0.5,
        review_precision=0.4,
        review_recall=0.7,
        scenario_recall={name: recall for name, (recall, _) in scenarios.items()},
        scenario_frauds={name: n for name, (_, n) in scenarios.items()},
        champion_test={"average_precision": 0.80, "card_precision_at_100": 0.35},
    )
    store.write_json(store.performance_file(settings, day), figures.to_dict())


def test_sensors_target_the_retraining_job_and_start_running(tiny_home, sensors):
    for name in (DRIFT_SENSOR, PERFORMANCE_SENSOR):
        sensor = sensors[name]
        assert sensor.job_name == RETRAINING_JOB
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds == 30
    automation = sensors[AUTOMATION_SENSOR]
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING


def test_no_report_and_no_drift_skip_with_the_reason(tiny_home, sensors, instance):
    first = tick(sensors[DRIFT_SENSOR], instance)
    assert first.run_requests == []
    assert first.skip_message.startswith("no drift report yet")
    write_report(tiny_home, DAY, {**QUIET, "tx_amount": 0.12, "customer_id_nb_tx_1day_window": 0.5})
    quiet = tick(sensors[DRIFT_SENSOR], instance, first.cursor)
    assert quiet.run_requests == []
    # A drifting column that is not a key feature does not count.
    assert quiet.skip_message == (
        "2018-05-10: no key feature over its threshold (max tx_amount 0.12 < 0.20)"
    )
    assert RetrainCursor.from_json(quiet.cursor).last_day_seen == "2018-05-10"


def test_key_drift_requests_retraining_once_with_its_figures(tiny_home, sensors, instance):
    write_report(tiny_home, DAY, {**QUIET, "tx_amount": 0.41, "score": 0.33})
    result = tick(sensors[DRIFT_SENSOR], instance)
    (request,) = result.run_requests
    assert request.job_name == RETRAINING_JOB
    assert request.run_key == "drift:2018-05-10"
    assert request.tags[REASON_TAG] == "drift"
    assert request.tags[DAY_TAG] == "2018-05-10"
    assert request.tags["fraudops/key_drift"] == "tx_amount=0.410,score=0.330"
    # Steps in a process each by default; the closed loop of the demo runs them in one.
    assert request.run_config == {"execution": {"config": {"multiprocess": {}}}}
    cursor = RetrainCursor.from_json(result.cursor)
    assert cursor.last_request_day == "2018-05-10" and cursor.last_request_at is not None

    # The cursor is all a later tick gets: the same drift is never requested again.
    again = tick(sensors[DRIFT_SENSOR], instance, result.cursor)
    assert again.run_requests == []
    assert again.skip_message.startswith("2018-05-10: retraining already requested for drift")
    assert json.loads(again.cursor)["last_request_day"] == "2018-05-10"


def test_the_cooldown_holds_a_new_drift_until_it_ends(tiny_home, sensors, instance):
    write_report(tiny_home, DAY, {**QUIET, "tx_amount": 0.41})
    requested = tick(sensors[DRIFT_SENSOR], instance)
    assert len(requested.run_requests) == 1
    next_day = DAY + dt.timedelta(days=1)
    write_report(tiny_home, next_day, {**QUIET, "tx_during_night": 0.5})
    held = tick(sensors[DRIFT_SENSOR], instance, requested.cursor)
    assert held.run_requests == []
    assert "2018-05-11: key drift (tx_during_night 0.50 > 0.20) but retraining cooldown" in (
        held.skip_message
    )
    assert "holds until" in held.skip_message
    # The same cursor 25 hours later (cooldown 24 h): the held drift is requested now.
    expired = RetrainCursor.from_json(held.cursor)
    expired.last_request_at = time.time() - 25 * 3600
    later = tick(sensors[DRIFT_SENSOR], instance, expired.to_json())
    (request,) = later.run_requests
    assert request.run_key == "drift:2018-05-11"


def test_a_data_quality_failure_alerts_once_and_never_retrains(tiny_home, sensors, instance):
    failure = "tx_amount: 20.00% null (limit 1.00%)"
    write_report(tiny_home, DAY, {**QUIET, "tx_amount": 0.6}, quality=(failure,))
    result = tick(sensors[DRIFT_SENSOR], instance)
    assert result.run_requests == []
    assert result.skip_message == (
        f"2018-05-10: data-quality failure, no retraining on broken data ({failure})"
    )
    (alert,) = result.asset_events
    assert isinstance(alert, dg.AssetObservation)
    assert alert.asset_key == DRIFT_REPORT and alert.partition == "2018-05-10"
    assert alert.tags["fraudops/alert"] == "data_quality"
    assert alert.metadata["quality_failures"].value == [failure]
    again = tick(sensors[DRIFT_SENSOR], instance, result.cursor)
    assert again.run_requests == [] and again.asset_events == []


def test_a_performance_drop_requests_retraining_once(tiny_home, sensors, instance):
    sensor = sensors[PERFORMANCE_SENSOR]
    assert tick(sensor, instance).skip_message.startswith("no model performance yet")
    write_performance(tiny_home, DAY, ap=0.70)
    holds = tick(sensor, instance)
    assert holds.run_requests == []
    assert holds.skip_message == (
        "2018-05-10: performance holds (AP 0.700, 0.100 below the test AP 0.800 of version 3; "
        "margin 0.150)"
    )
    write_performance(tiny_home, DAY, ap=0.50)
    result = tick(sensor, instance, holds.cursor)
    (request,) = result.run_requests
    assert request.job_name == RETRAINING_JOB
    assert request.run_key == "performance:2018-05-10"
    assert request.tags[REASON_TAG] == "performance"
    assert request.tags["fraudops/ap_drop"] == "0.3000"
    assert request.tags["fraudops/test_average_precision"] == "0.8000"
    assert request.tags["fraudops/below_floors"].startswith("average precision 0.500 is 0.300")
    again = tick(sensor, instance, result.cursor)
    assert again.run_requests == []
    assert again.skip_message.startswith("2018-05-10: retraining already requested")


def test_a_scenario_the_model_misses_requests_retraining_at_a_good_ap(tiny_home, sensors, instance):
    # Card testing: a new scenario caught 10 % of the time, though the day's AP holds.
    scenarios = {"scenario_1": (0.9, 30), "scenario_4": (0.1, 10)}
    write_performance(tiny_home, DAY, ap=0.78, scenarios=scenarios)
    (request,) = tick(sensors[PERFORMANCE_SENSOR], instance).run_requests
    assert request.run_key == "performance:2018-05-10"
    assert request.tags["fraudops/below_floors"] == (
        "scenario_4 recall 0.100 is below the floor 0.250 on 10 frauds"
    )


def test_a_day_with_few_frauds_is_not_judged(tiny_home, sensors, instance):
    write_performance(tiny_home, DAY, ap=0.1, frauds=2)
    result = tick(sensors[PERFORMANCE_SENSOR], instance)
    assert result.run_requests == []
    assert result.skip_message == ("2018-05-10: 2 frauds, fewer than 5: the day's AP is not judged")


def test_the_cooldown_is_shared_through_the_instance_runs(tiny_home, sensors, instance):
    # A retraining run started by the drift sensor (or by hand) holds the performance sensor.
    write_performance(tiny_home, DAY, ap=0.50)
    run = dg.DagsterRun(job_name=RETRAINING_JOB, status=dg.DagsterRunStatus.STARTED)
    instance.add_run(run)
    running = tick(sensors[PERFORMANCE_SENSOR], instance)
    assert running.run_requests == []
    assert f"retraining run {run.run_id[:8]} is still running" in running.skip_message
    instance.report_run_failed(run)
    finished = tick(sensors[PERFORMANCE_SENSOR], instance, running.cursor)
    assert finished.run_requests == []
    assert "retraining cooldown of 24 h since" in finished.skip_message


def test_without_cooldown_a_finished_run_no_longer_holds(tiny_home, sensors, instance, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_RETRAIN_COOLDOWN_HOURS", "0")
    write_performance(tiny_home, DAY, ap=0.50)
    run = dg.DagsterRun(job_name=RETRAINING_JOB, status=dg.DagsterRunStatus.SUCCESS)
    instance.add_run(run)
    (request,) = tick(sensors[PERFORMANCE_SENSOR], instance).run_requests
    assert request.run_key == "performance:2018-05-10"


@pytest.fixture
def lag(tiny_home, monkeypatch) -> dt.timedelta:
    """The wait until a retrain can learn turned on; the days between the newest labelled day
    and the end of the training window (the protocol's gap and test window)."""
    monkeypatch.setenv("FRAUDOPS_PERFORMANCE_WAIT_UNTIL_LEARNABLE", "true")
    return dt.timedelta(days=tiny_home.label_delay_days + tiny_home.test_days)


def test_a_drop_waits_until_a_bad_day_enters_the_training_window(tiny_home, sensors, instance, lag):
    settings = tiny_home
    write_performance(settings, DAY, ap=0.50)
    waiting = tick(sensors[PERFORMANCE_SENSOR], instance)
    assert waiting.run_requests == []
    assert "it cannot learn the change" in waiting.skip_message
    assert f"has the labels of {DAY + lag}" in waiting.skip_message
    # Days go on, each under the floors: the first day of the drop reaches the window.
    for offset in range(1, lag.days + 1):
        write_performance(settings, DAY + dt.timedelta(days=offset), ap=0.50)
        result = tick(sensors[PERFORMANCE_SENSOR], instance, waiting.cursor)
        if offset < lag.days:
            assert result.run_requests == [], offset
            waiting = result
    (request,) = result.run_requests
    assert request.run_key == f"performance:{DAY + lag}"


def test_a_good_day_in_the_training_window_does_not_count_as_the_drop(
    tiny_home, sensors, instance, lag
):
    settings = tiny_home
    write_performance(settings, DAY, ap=0.78)
    write_performance(settings, DAY + lag, ap=0.50)
    result = tick(sensors[PERFORMANCE_SENSOR], instance)
    assert result.run_requests == []
    assert f"has the labels of {DAY + 2 * lag}" in result.skip_message
