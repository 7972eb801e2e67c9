"""The closed loop of the demo: further simulated days served over HTTP, each run by the daily
job, the Dagster daemon's sensors deciding on retraining, and a summary table per day.

The days follow the last ingested one; a drift of the source system (by default a new fraud
pattern, card testing) starts on a given day. Each day the service answers that day's
transactions (the batch endpoint), then the daily job ingests the day, rebuilds the marts from
it, materializes the online store for the next day, scores the batch, profiles the logged
traffic and writes the drift report. The daemon's sensors read the report (and, once the labels
of an earlier day are in, that day's model performance) and request the retraining job, which
the daemon launches; the running service reloads a new champion on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cli.daemon import DaemonProcess
from cli.launcher import ServiceProcess
from cli.live import score_batch, scoring_requests
from fraudops.environ import exported, settings_env
from fraudops.settings import Settings, SimDrift

Say = Callable[[str], None]
RunJob = Callable[..., None]
DAILY_JOB = "daily"
RETRAINING_JOB = "retraining"
RETRAINING_SENSORS = ("drift_retraining", "performance_retraining")
CHAMPION_ASSET = ("ml", "champion")


@dataclass
class LoopDay:
    """What one day of the loop showed."""

    day: dt.date
    drifted: bool
    transactions: int = 0
    served_by: list[str] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    key_drift: dict[str, float] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    sensor: list[str] = field(default_factory=list)
    retraining_run: str | None = None
    # The loop's latency, wall seconds from the day's close (its last transaction answered):
    # to the drift report on disk (the alert), to the sensor tick that requested retraining,
    # and to the start of the run the daemon launched.
    report_after_s: float | None = None
    request_after_s: float | None = None
    run_started_after_s: float | None = None
    # AP on the day's logged traffic of the answers the service gave, of the champion before
    # the loop and of the newest challenger its retraining trained, promoted or not (their
    # pyfuncs on the same logged inputs); against the fraud reports once the day's labels are
    # in ("labels"), else the simulator's truth.
    served_ap: float | None = None
    old_champion_ap: float | None = None
    retrained_ap: float | None = None
    ap_from: str = ""
    seconds: float = 0.0


def loop_settings(
    settings: Settings,
    days: int,
    drift: SimDrift,
    sensor_interval_s: int = 5,
    cooldown_s: float = 60.0,
    train_days: int | None = None,
) -> Settings:
    """The settings extended by ``days`` days with ``drift``, on the loop's clock; the retrains
    of the loop train on ``train_days`` days (default: the settings')."""
    values = settings.model_dump()
    values.update(
        train_days=train_days or settings.train_days,
        sim_days=settings.sim_days + days,
        sim_drifts=[*values["sim_drifts"], drift.model_dump()],
        # The loop's days follow each other in seconds: the service looks for a new
        # champion, and the sensors look for a new report, every few seconds, and the
        # retraining cooldown (wall-clock) is a minute rather than a day.
        serving_reload_interval_s=min(settings.serving_reload_interval_s, 5.0),
        monitoring_sensor_interval_s=min(settings.monitoring_sensor_interval_s, sensor_interval_s),
        retrain_cooldown_hours=min(settings.retrain_cooldown_hours, cooldown_s / 3600),
        # A requested retraining runs its steps in its run's process: a process per step
        # would start (and import the platform) seven times while the days go on.
        retrain_executor="in_process",
    )
    return Settings(**values)


def land_day(settings: Settings, day: dt.date) -> list[dict]:
    """Land the day's extracts (the source system) and return its transactions as requests."""
    from lakehouse.simulator import Simulator, SimulatorConfig
    from lakehouse.source import land_range

    simulator = Simulator(SimulatorConfig.from_settings(settings))
    land_range(simulator, settings.landing_path, day, day)
    return scoring_requests(simulator.simulate_day(day).transactions)


def next_day_requests(settings: Settings, day: dt.date) -> list[dict]:
    """The transactions of ``day`` as requests, simulated but not landed."""
    from lakehouse.simulator import Simulator, SimulatorConfig

    simulator = Simulator(SimulatorConfig.from_settings(settings))
    return scoring_requests(simulator.simulate_day(day).transactions)


def serve_day(client: httpx.Client, settings: Settings, requests: list[dict]) -> list[dict]:
    """Send the day's transactions to the batch endpoint; the answers in order."""
    answers: list[dict] = []
    for start in range(0, len(requests), settings.serving_max_batch):
        answers.extend(score_batch(client, requests[start : start + settings.serving_max_batch]))
    return answers


@dataclass(frozen=True)
class Tick:
    """One evaluation of a sensor by the daemon."""

    sensor: str
    timestamp: float  # when the tick started
    text: str
    run_ids: tuple[str, ...] = ()
    ended: float | None = None  # when it ended: a request is submitted by then


def sensor_ticks(after: float, names: tuple[str, ...] = RETRAINING_SENSORS) -> list[Tick]:
    """The ticks of the sensors ``names`` since ``after`` (epoch seconds), oldest first."""
    import dagster as dg
    from dagster._core.definitions.run_request import InstigatorType

    ticks: list[Tick] = []
    with dg.DagsterInstance.get() as instance:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name not in names:
                continue
            for tick in instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=float(after)
            ):
                if tick.run_keys:
                    text = f"requested {', '.join(tick.run_keys)}"
                elif tick.skip_reason:
                    text = f"skipped: {tick.skip_reason}"
                elif tick.error:
                    text = f"error: {tick.error.message.splitlines()[0]}"
                else:
                    text = tick.status.value.lower()
                ticks.append(
                    Tick(
                        state.instigator_name,
                        tick.timestamp,
                        text,
                        tuple(tick.run_ids),
                        tick.end_timestamp,
                    )
                )
    return sorted(ticks, key=lambda t: t.timestamp)


def wait_for_ticks(after: float, day: dt.date, timeout: float) -> list[Tick]:
    """The retraining sensors' decisions since ``after`` (epoch seconds) once each has decided
    on ``day`` (or after ``timeout``): the drift sensor's ticks about that day's report, the
    performance sensor's newest tick; repeated texts once each."""
    deadline = time.monotonic() + timeout
    drift_sensor, performance_sensor = RETRAINING_SENSORS
    while True:
        # A tick still in progress has not decided yet (no request, no skip reason).
        ticks = [t for t in sensor_ticks(after) if t.text != "started"]
        # A tick that started just before the report was written may still have read it: the
        # day in its text (a skip reason, or the run key of a request) tells.
        drift = [t for t in ticks if t.sensor == drift_sensor and day.isoformat() in t.text]
        performance = [t for t in ticks if t.sensor == performance_sensor][-1:]
        if (drift and performance) or time.monotonic() > deadline:
            unique = {(t.sensor, t.text): t for t in reversed(drift + performance)}
            return sorted(unique.values(), key=lambda t: t.timestamp)
        time.sleep(1.0)


def run_record(run_id: str):
    """The instance's record of run ``run_id`` (None: unknown)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return instance.get_run_record_by_id(run_id)


def wait_for_run_start(run_id: str, timeout: float) -> float | None:
    """Epoch seconds at which run ``run_id`` started (None: not within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = run_record(run_id)
        if record is not None and record.start_time is not None:
            return record.start_time
        time.sleep(0.5)
    return None


def unfinished_retraining() -> list:
    """Retraining runs queued or in progress."""
    import dagster as dg

    active = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(dg.RunsFilter(job_name=RETRAINING_JOB, statuses=active)))


def wait_for_retraining(say: Say, timeout: float) -> None:
    """Wait until no retraining run is queued or in progress; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    announced = False
    while unfinished_retraining():
        if time.monotonic() > deadline:
            raise TimeoutError(f"a retraining run was still unfinished after {timeout:.0f} s")
        if not announced:
            say("  waiting for the requested retraining run to finish ...")
            announced = True
        time.sleep(2.0)


@dataclass(frozen=True)
class GateDecision:
    """The promotion gate's decision in one retraining run (its champion materialization)."""

    run_id: str
    status: str  # the run's status: success, failure, ...
    decision: str | None = None  # None: the run did not reach the gate
    reason: str = ""
    challenger_version: str | None = None
    champion_version_before: str | None = None

    def __str__(self) -> str:
        if self.decision is None:
            return f"run {self.run_id[:8]} {self.status}, no gate decision"
        return (
            f"run {self.run_id[:8]} {self.status}: gate {self.decision} challenger "
            f"v{self.challenger_version} (champion before v{self.champion_version_before}): "
            f"{self.reason}"
        )


def gate_decisions(run_ids: list[str]) -> list[GateDecision]:
    """The promotion gate's decision of each retraining run, read from the metadata of the
    ``ml/champion`` materialization the run recorded."""
    import dagster as dg

    decisions = []
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            status = run.status.value.lower() if run else "unknown"
            records = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            found = GateDecision(run_id, status)
            for record in records:
                materialization = record.event_log_entry.asset_materialization
                if materialization and materialization.asset_key == dg.AssetKey(CHAMPION_ASSET):
                    meta = {k: v.value for k, v in materialization.metadata.items()}
                    found = GateDecision(
                        run_id,
                        status,
                        str(meta.get("decision")),
                        str(meta.get("reason", "")),
                        str(meta.get("challenger_version")),
                        str(meta.get("champion_version_before")),
                    )
            decisions.append(found)
    return decisions


@dataclass
class LoopResult:
    """The loop's days, and the champion before and after it."""

    days: list[LoopDay]
    champion_before: str
    champion_after: str
    decisions: list[GateDecision] = field(default_factory=list)  # one per retraining run
    served_after: str | None = None  # the version the service answered with at the end
    retrained: str | None = None  # the newest challenger a retraining run of the loop trained


def wait_for_served_version(
    client: httpx.Client, probes: list[dict], version: str, timeout: float
) -> str | None:
    """Score ``probes`` until the service answers with ``version`` (it reloads its alias on its
    own); the version of the last answers' non-degraded rows (degraded rows are answered by
    the champion's fallback model, labelled ``fallback-<n>``)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.post("/v1/score/batch", json={"transactions": probes})
        response.raise_for_status()
        answers = response.json()["results"]
        full = [a["model_version"] for a in answers if not a["degraded"]]
        served = Counter(full or [a["model_version"] for a in answers]).most_common(1)[0][0]
        if served == version or time.monotonic() > deadline:
            return served
        time.sleep(1.0)


def _frauds(settings: Settings, day: dt.date) -> tuple[set[int], str]:
    """The frauds of ``day``: its fraud reports once its labels are known, else the truth the
    simulated source knows now (the reports the bank sends ``label_delay_days`` later)."""
    from fraudops.catalog import RAW_FRAUD_REPORTS
    from lakehouse.delta import read_table
    from lakehouse.simulator import Simulator, SimulatorConfig
    from monitoring.performance import labels_known

    if labels_known(settings, day):
        reported = read_table(RAW_FRAUD_REPORTS.uri(settings), ["transaction_id"])
        return set(reported.column("transaction_id").to_pylist()), "labels"
    frauds = Simulator(SimulatorConfig.from_settings(settings)).simulate_day(day).frauds
    return set(frauds.column("transaction_id").to_pylist()), "simulator"


def score_days(settings: Settings, rows: list[LoopDay], old: str, new: str) -> None:
    """Fill each day's AP of the served answers, of the old champion and (if another) of
    version ``new``, the newest challenger the loop's retraining trained."""
    import pandas as pd
    from sklearn.metrics import average_precision_score

    from monitoring.production import NoTrafficError, read_day
    from monitoring.reference import score_rows

    try:
        frames = {row.day: read_day(settings, row.day) for row in rows}
    except NoTrafficError:
        return
    frames = {day: frame for day, frame in frames.items() if not frame.empty}
    if not frames:
        return
    both = pd.concat(frames.values(), keys=list(frames), names=["day", None])
    # One load of each model for every day: its pyfunc on the logged inputs.
    scores = {v: score_rows(settings, v, both) for v in dict.fromkeys([old, new])}
    for row in rows:
        if row.day not in frames:
            continue
        frauds, row.ap_from = _frauds(settings, row.day)
        at = both.index.get_level_values("day") == row.day
        labels = both.loc[at, "transaction_id"].isin(frauds).astype("int64")
        if labels.nunique() < 2:
            continue
        row.served_ap = float(average_precision_score(labels, both.loc[at, "score"]))
        row.old_champion_ap = float(average_precision_score(labels, scores[old][at]))
        if new != old:
            row.retrained_ap = float(average_precision_score(labels, scores[new][at]))


def _key_drift(settings: Settings, day: dt.date) -> tuple[dict[str, float], list[str]]:
    from monitoring.report import load_drift_report

    report = load_drift_report(settings, day)
    if report is None:
        return {}, ["no drift report"]
    keys = [c for c in settings.drift_key_features if c in report.scores]
    scores = {c: report.scores[c] for c in keys}
    alerts = [f"drift {c} {report.scores[c]:.2f}" for c in report.key_drift]
    alerts += [f"data quality: {failure}" for failure in report.quality_failures]
    return scores, alerts


def report_written_at(settings: Settings, day: dt.date) -> float | None:
    """Epoch seconds at which the drift report of ``day`` was written (what the drift sensor
    reads); None without a report."""
    from monitoring import store
    from monitoring.report import SUMMARY

    path = store.report_folder(settings, day) / SUMMARY
    return path.stat().st_mtime if path.exists() else None


def _record_request(row: LoopDay, ticks: list[Tick], closed: float, timeout: float) -> None:
    """The retraining request among the day's ticks, and when its run started, in seconds
    after the day ``closed`` (epoch seconds)."""
    requested = next((t for t in ticks if t.run_ids), None)
    if requested is None:
        return
    row.retraining_run = requested.run_ids[0]
    # A tick may start just before the report is written and still read it: its end is when
    # the request was made.
    row.request_after_s = (requested.ended or requested.timestamp) - closed
    started = wait_for_run_start(row.retraining_run, timeout)
    if started is not None:
        row.run_started_after_s = started - closed


def run_loop(
    settings: Settings,
    say: Say,
    run_job: RunJob,
    days: int,
    drift_from: int = 1,
    intensity: float = 1.0,
    kind: str = "new_fraud_pattern",
    sensor_interval_s: int = 5,
    cooldown_s: float = 60.0,
    retrain_timeout_s: float = 900.0,
    service_port: int | None = None,
    train_days: int | None = None,
) -> LoopResult:
    """Serve and run ``days`` further days with the daemon's sensors live; a row per day.

    ``run_job(settings, job_name, say, partition=day)`` runs a job of the code location on the
    instance (cli/demo.py ``run_job``). A drift ``kind`` of intensity ``intensity`` starts on
    loop day ``drift_from`` (1: the first). The service listens on ``service_port`` (default:
    a free one). The retraining runs of the loop train on ``train_days`` days (default: the
    settings').
    """
    from monitoring.reference import champion_version

    first = settings.sim_end_date + dt.timedelta(days=1)
    drift_day = first + dt.timedelta(days=drift_from - 1)
    drift = SimDrift(kind=kind, start=drift_day, intensity=intensity)
    settings = loop_settings(settings, days, drift, sensor_interval_s, cooldown_s, train_days)
    env = settings_env(settings)
    # The daily job runs in this process and reads its settings from the environment.
    with exported(env):
        old_champion = champion_version(settings)
        say(
            f"closed loop: {days} further days from {first}, {kind} from {drift_day} "
            f"(intensity {intensity}); champion v{old_champion}"
        )
        # The daemon loads the code location while the service starts: both take a while.
        daemon = DaemonProcess(env, settings.dagster_home_path / "daemon.log").launch()
        rows: list[LoopDay] = []
        result = LoopResult(rows, old_champion, old_champion)
        log = settings.home / "serving" / "loop-service.log"
        try:
            port = {"port": service_port} if service_port else {}
            service = ServiceProcess(env, log, **port).start()
        except BaseException:
            daemon.stop()
            raise
        say(f"scoring service up at {service.url}")
        try:
            daemon.wait_ready()
        except BaseException:
            service.stop()
            raise
        say(f"Dagster daemon up (sensors tick every {settings.monitoring_sensor_interval_s} s)")
        headers = {"X-API-Key": settings.serving_api_keys[0]}
        try:
            with httpx.Client(base_url=service.url, headers=headers, timeout=120) as client:
                for index in range(days):
                    day = first + dt.timedelta(days=index)
                    started = time.perf_counter()
                    row = LoopDay(day=day, drifted=day >= drift_day)
                    requests = land_day(settings, day)
                    say(
                        f"day {index + 1}/{days} {day}{' (drifted)' if row.drifted else ''}: "
                        f"{len(requests):,} transactions to the service, then the daily job ..."
                    )
                    answers = serve_day(client, settings, requests)
                    closed = time.time()
                    row.transactions = len(answers)
                    row.served_by = sorted({a["model_version"] for a in answers})
                    row.decisions = dict(Counter(a["decision"] for a in answers))
                    # The prediction log is flushed every serving_log_flush_s: let the day in.
                    time.sleep(settings.serving_log_flush_s + 1.0)
                    job_started = time.time()
                    run_job(settings, DAILY_JOB, say, partition=day.isoformat())
                    written = report_written_at(settings, day)
                    if written is not None:
                        row.report_after_s = written - closed
                    row.key_drift, row.alerts = _key_drift(settings, day)
                    # The daemon may act on the report before the daily job's last steps end.
                    ticks = wait_for_ticks(
                        job_started, day, 6 * settings.monitoring_sensor_interval_s + 30
                    )
                    row.sensor = [f"{t.sensor}: {t.text}" for t in ticks]
                    _record_request(row, ticks, closed, timeout=120)
                    row.seconds = time.perf_counter() - started
                    say(
                        f"  {day}: {row.transactions:,} tx, served by v{'/v'.join(row.served_by)}, "
                        f"{row.decisions}, alerts {row.alerts or 'none'}; "
                        + "; ".join(row.sensor or ["no sensor tick"])
                        + f" ({row.seconds:.0f} s)"
                    )
                    rows.append(row)
                wait_for_retraining(say, timeout=retrain_timeout_s)
                result.decisions = gate_decisions(
                    [r.retraining_run for r in rows if r.retraining_run]
                )
                for line in result.decisions:
                    say(f"  retraining {line}")
                result.champion_after = champion_version(settings)
                # Transactions of the day after the loop: the online store now holds the features
                # as of the last day's end, which only later transactions may use (an earlier one
                # would be answered degraded, by the fallback model).
                probes = next_day_requests(settings, first + dt.timedelta(days=days))[:20]
                result.served_after = wait_for_served_version(
                    client, probes, result.champion_after, timeout=60
                )
                say(
                    f"champion v{result.champion_before} -> v{result.champion_after}; "
                    f"the service answers with v{result.served_after}"
                )
        finally:
            service.stop()
            daemon.stop()
        # The newest challenger of the loop's retrains, promoted or not: what retraining gave.
        retrained = [d.challenger_version for d in result.decisions if d.decision is not None]
        result.retrained = retrained[-1] if retrained else None
        say("scoring each day's logged traffic with the old champion and the newest challenger ...")
        score_days(
            settings, rows, result.champion_before, result.retrained or result.champion_before
        )
        path = write_loop_latency(settings, rows)
        say(f"loop latency figures written to {path}")
        return result


def summary_table(rows: list[LoopDay]) -> str:
    """The loop's days as a Markdown table."""

    def figure(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| day | drift | tx | key drift (max) | alerts | sensor decisions | served by "
        "| report / request / run start after close (s) | AP served | AP old champion "
        "| AP retrained | AP from | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        top = max(row.key_drift.items(), key=lambda kv: kv[1], default=None)
        latency = " / ".join(
            figure(v, 1) for v in (row.report_after_s, row.request_after_s, row.run_started_after_s)
        )
        lines.append(
            f"| {row.day} | {'yes' if row.drifted else '-'} | {row.transactions:,} "
            f"| {f'{top[0]} {top[1]:.2f}' if top else '-'} | {len(row.alerts)} "
            f"| {'<br>'.join(row.sensor) or '-'} | v{'/v'.join(row.served_by)} | {latency} "
            f"| {figure(row.served_ap)} | {figure(row.old_champion_ap)} "
            f"| {figure(row.retrained_ap)} | {row.ap_from or '-'} | {row.seconds:.1f} |"
        )
    return "\n".join(lines)


def write_loop_latency(settings: Settings, rows: list[LoopDay]) -> Path:
    """Write :func:`loop_latency` to ``<home>/bench/loop_latency.json`` (the benchmarks'
    folder) with every day's figures; the path."""
    figures = {
        **loop_latency(rows),
        "days": [
            {
                "day": r.day.isoformat(),
                "transactions": r.transactions,
                "report_after_close_s": r.report_after_s,
                "request_after_close_s": r.request_after_s,
                "run_started_after_close_s": r.run_started_after_s,
                "day_wall_s": r.seconds,
            }
            for r in rows
        ],
    }
    path = settings.home / "bench" / "loop_latency.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    return path


def loop_latency(rows: list[LoopDay]) -> dict[str, object]:
    """The loop-latency figures of the first day whose drift requested retraining."""
    row = next((r for r in rows if r.retraining_run), None)
    if row is None:
        return {"day": None, "note": "no day of the loop requested retraining"}
    return {
        "day": row.day.isoformat(),
        "report_after_close_s": row.report_after_s,
        "request_after_close_s": row.request_after_s,
        "run_started_after_close_s": row.run_started_after_s,
        "retraining_run": row.retraining_run,
    }
