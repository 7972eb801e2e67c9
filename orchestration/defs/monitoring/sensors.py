"""The closed loop: drift and delayed-label performance request the retraining job.

Each sensor reads one small JSON file of ``monitoring`` per tick (the newest drift report, the
newest day's performance; on a bad day the performance sensor also reads the days of the
training window a retrain would use) and the newest retraining run of the instance. A
request is made once per (reason, day): the run key ``<reason>:<day>`` and the cursor both say
so. A cooldown of ``retrain_cooldown_hours`` after the newest retraining request or run,
whoever started it, holds every further request; it delays a request, it does not drop it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import asdict, dataclass

import dagster as dg

from fraudops.settings import Settings, get_settings
from ml.split import time_split
from monitoring.performance import DayPerformance, first_bad_day_in, newest_performance
from monitoring.report import DriftReport, newest_drift_report
from orchestration.defs.monitoring.assets import DRIFT_REPORT, MODEL_PERFORMANCE
from orchestration.defs.training.schedules import RETRAINING_JOB
from orchestration.resources import SettingsResource

DRIFT_SENSOR = "drift_retraining"
PERFORMANCE_SENSOR = "performance_retraining"
AUTOMATION_SENSOR = "monitoring_automation"
REASON_TAG = "fraudops/retrain_reason"
DAY_TAG = "fraudops/monitoring_day"
_UNFINISHED = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


@dataclass
class RetrainCursor:
    """What a retraining sensor remembers between ticks (stored as JSON)."""

    last_request_at: float | None = None  # epoch seconds of this sensor's newest request
    last_request_day: str | None = None  # the day that request was for
    last_day_seen: str | None = None  # the day of the newest report evaluated
    alerted_day: str | None = None  # the newest day a data-quality alert was raised for

    def to_json(self) -> str:
        """The cursor as stored by Dagster."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        """The cursor of :meth:`to_json`; a fresh one for a sensor's first tick."""
        return cls(**json.loads(text)) if text else cls()


def _at(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def retraining_hold(
    context: dg.SensorEvaluationContext, cursor: RetrainCursor, settings: Settings, now: float
) -> str | None:
    """Why no retraining may be requested now (a run in flight, the cooldown), or None."""
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=RETRAINING_JOB), limit=1
    )
    started = [cursor.last_request_at] if cursor.last_request_at is not None else []
    if records:
        run = records[0]
        if run.dagster_run.status in _UNFINISHED:
            return f"retraining run {run.dagster_run.run_id[:8]} is still running"
        started.append(run.create_timestamp.timestamp())
    if not started:
        return None
    until = max(started) + settings.retrain_cooldown_hours * 3600
    if now < until:
        return (
            f"retraining cooldown of {settings.retrain_cooldown_hours:g} h since "
            f"{_at(max(started))} holds until {_at(until)}"
        )
    return None


def retraining_run_config(settings: Settings) -> dict[str, object]:
    """Run configuration of a requested retraining run: the executor the settings name."""
    return {"execution": {"config": {settings.retrain_executor: {}}}}


def _request(
    reason: str,
    day: str,
    figures: dict[str, str],
    cursor: RetrainCursor,
    now: float,
    settings: Settings,
) -> dg.SensorResult:
    """The one retraining request for ``(reason, day)``; the cursor remembers it."""
    cursor.last_request_at, cursor.last_request_day = now, day
    request = dg.RunRequest(
        run_key=f"{reason}:{day}",
        job_name=RETRAINING_JOB,
        run_config=retraining_run_config(settings),
        tags={REASON_TAG: reason, DAY_TAG: day, **figures},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor.to_json())


def _skip(message: str, cursor: RetrainCursor, **extra: object) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=dg.SkipReason(message), cursor=cursor.to_json(), **extra)


def _strongest_key(report: DriftReport, settings: Settings) -> str:
    """``max <column> <score> < <threshold>`` over the key features the report scored."""
    keys = [c for c in settings.drift_key_features if c in report.scores]
    if not keys:
        return "no key feature scored"
    top = max(keys, key=lambda c: report.scores[c])
    return f"max {top} {report.scores[top]:.2f} < {report.thresholds[top]:.2f}"


def _drift_figures(report: DriftReport) -> dict[str, str]:
    drifted = ",".join(f"{c}={report.scores[c]:.3f}" for c in report.key_drift)
    return {
        "fraudops/key_drift": drifted,
        "fraudops/reference_version": report.reference_version,
        "fraudops/report_rows": str(report.rows),
    }


def evaluate_drift(
    context: dg.SensorEvaluationContext, settings: Settings, now: float
) -> dg.SensorResult:
    """One tick of the drift sensor."""
    cursor = RetrainCursor.from_json(context.cursor)
    report = newest_drift_report(settings)
    if report is None:
        return _skip("no drift report yet (monitoring/drift_report writes one per day)", cursor)
    day = report.day.isoformat()
    cursor.last_day_seen = day
    if report.quality_failures:
        failures = "; ".join(report.quality_failures)
        events = []
        if cursor.alerted_day != day:
            cursor.alerted_day = day
            context.log.error(f"{day}: data-quality failure, retraining withheld: {failures}")
            events = [
                dg.AssetObservation(
                    asset_key=DRIFT_REPORT,
                    partition=day,
                    tags={"fraudops/alert": "data_quality"},
                    metadata={
                        "alert": "data-quality failure: no retraining on broken data",
                        "quality_failures": report.quality_failures,
                        "key_drift": report.key_drift,
                    },
                )
            ]
        return _skip(
            f"{day}: data-quality failure, no retraining on broken data ({failures})",
            cursor,
            asset_events=events,
        )
    if not report.key_drift:
        return _skip(
            f"{day}: no key feature over its threshold ({_strongest_key(report, settings)})", cursor
        )
    drifted = ", ".join(
        f"{c} {report.scores[c]:.2f} > {report.thresholds[c]:.2f}" for c in report.key_drift
    )
    if cursor.last_request_day is not None and day <= cursor.last_request_day:
        return _skip(f"{day}: retraining already requested for drift ({drifted})", cursor)
    hold = retraining_hold(context, cursor, settings, now)
    if hold is not None:
        return _skip(f"{day}: key drift ({drifted}) but {hold}", cursor)
    context.log.info(f"{day}: key drift ({drifted}): requesting {RETRAINING_JOB}")
    return _request("drift", day, _drift_figures(report), cursor, now, settings)


def _performance_figures(perf: DayPerformance, reasons: list[str]) -> dict[str, str]:
    return {
        "fraudops/average_precision": f"{perf.average_precision:.4f}",
        "fraudops/test_average_precision": f"{perf.champion_test['average_precision']:.4f}",
        "fraudops/ap_drop": f"{perf.ap_drop:.4f}",
        "fraudops/model_version": perf.model_version,
        "fraudops/frauds": str(perf.frauds),
        # Run tag values are short strings: the reasons in full are in the sensor's log.
        "fraudops/below_floors": "; ".join(reasons)[:200],
    }


def _not_learnable_yet(settings: Settings, newest: dt.date) -> str | None:
    """Why a retrain now could not learn the drop (None: it can, or the wait is off).

    A retrain whose newest labelled day is ``newest`` trains on the window the protocol puts
    a gap and a test window before it; with no day under the floors in that window it would
    learn from the days before the change only.
    """
    if not settings.performance_wait_until_learnable:
        return None
    split = time_split(newest, settings.train_days, settings.label_delay_days, settings.test_days)
    first = first_bad_day_in(settings, split.train_start, newest) or newest
    if first <= split.train_end:
        return None
    learnable_at = first + (newest - split.train_end)
    return (
        f"a retrain now trains on {split.train_start}..{split.train_end}, no day of which is "
        f"under the floors: it cannot learn the change; the first retrain that can has the "
        f"labels of {learnable_at} (performance_wait_until_learnable)"
    )


def evaluate_performance(
    context: dg.SensorEvaluationContext, settings: Settings, now: float
) -> dg.SensorResult:
    """One tick of the performance sensor: the newest labelled day under its floors retrains."""
    cursor = RetrainCursor.from_json(context.cursor)
    perf = newest_performance(settings)
    if perf is None:
        return _skip(
            "no model performance yet (monitoring/model_performance runs once a day's labels "
            "are known)",
            cursor,
        )
    day = perf.day.isoformat()
    cursor.last_day_seen = day
    if perf.frauds < settings.performance_min_frauds:
        return _skip(
            f"{day}: {perf.frauds} frauds, fewer than {settings.performance_min_frauds}: the "
            "day's AP is not judged",
            cursor,
        )
    if math.isnan(perf.ap_drop):
        return _skip(
            f"{day}: no AP to compare (version {perf.model_version} has no test AP)", cursor
        )
    test_ap = perf.champion_test["average_precision"]
    figures = (
        f"AP {perf.average_precision:.3f}, {perf.ap_drop:.3f} below the test AP {test_ap:.3f} "
        f"of version {perf.model_version}; margin {settings.performance_ap_margin:.3f}"
    )
    reasons = perf.below_floors(settings)
    if not reasons:
        return _skip(f"{day}: performance holds ({figures})", cursor)
    why = "; ".join(reasons)
    if cursor.last_request_day is not None and day <= cursor.last_request_day:
        return _skip(f"{day}: retraining already requested for performance ({why})", cursor)
    unlearnable = _not_learnable_yet(settings, perf.day)
    if unlearnable is not None:
        return _skip(f"{day}: under the floors ({why}) but {unlearnable}", cursor)
    hold = retraining_hold(context, cursor, settings, now)
    if hold is not None:
        return _skip(f"{day}: under the floors ({why}) but {hold}", cursor)
    context.log.info(f"{day}: under the floors ({why}): requesting {RETRAINING_JOB}")
    return _request("performance", day, _performance_figures(perf, reasons), cursor, now, settings)


def build_sensors(interval_s: int | None = None) -> list[dg.SensorDefinition]:
    """The drift and performance sensors, and the automation sensor of the lagged performance,
    each ticking every ``interval_s`` seconds (default: the settings in force now)."""
    if interval_s is None:
        interval_s = get_settings().monitoring_sensor_interval_s

    @dg.sensor(
        name=DRIFT_SENSOR,
        job_name=RETRAINING_JOB,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests the retraining job when the newest drift report shows a key feature over "
            "its threshold and the data passed its quality limits; once per day (run key "
            "drift:<day>), never within the retraining cooldown."
        ),
    )
    def drift_retraining(
        context: dg.SensorEvaluationContext, settings: SettingsResource
    ) -> dg.SensorResult:
        return evaluate_drift(context, settings.get(), time.time())

    @dg.sensor(
        name=PERFORMANCE_SENSOR,
        job_name=RETRAINING_JOB,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests the retraining job when the newest labelled day is under its floors (AP "
            "more than FRAUDOPS_PERFORMANCE_AP_MARGIN below the served version's test AP, a "
            "fraud scenario's recall or card precision@100 under its floor); once per day (run "
            "key performance:<day>), sharing the drift sensor's cooldown."
        ),
    )
    def performance_retraining(
        context: dg.SensorEvaluationContext, settings: SettingsResource
    ) -> dg.SensorResult:
        return evaluate_performance(context, settings.get(), time.time())

    automation = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(MODEL_PERFORMANCE),
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Materializes monitoring/model_performance for a day once the fraud reports that "
            "complete its labels have arrived."
        ),
    )
    return [drift_retraining, performance_retraining, automation]
