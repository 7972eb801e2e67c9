"""``fraudops stack demo``: the whole loop against the running production stack.

Each Dagster job is submitted to the stack's webserver and waits in the run queue until the
daemon launches it through the code server, as in a deployment; the stack's own scoring
service then follows the new champion alias and scores the next day over HTTP. Every stage's
wall time is reported.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from cli.live import next_day, scoring_requests
from fraudops.settings import Settings

Say = Callable[[str], None]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class DemoStageError(RuntimeError):
    """A stage of the demo failed; the message says which and where to look."""


def dagster_client(settings: Settings):
    """A GraphQL client of the stack's Dagster webserver."""
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient(settings.stack_host, port_number=settings.stack_dagster_port)


def run_through_daemon(
    settings: Settings,
    job: str,
    tags: dict[str, str] | None = None,
    ops: dict[str, dict] | None = None,
    timeout_s: float = 1_800.0,
) -> str:
    """Submit ``job`` to the webserver, wait until the daemon's run finishes; returns its id."""
    from cli.stack_components import LOCATION_NAME

    client = dagster_client(settings)
    # One process per run (the run worker the daemon launches) rather than one per step: on a
    # small machine each step's own process costs more than the step at demo scale.
    run_config: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
    if ops:
        run_config["ops"] = {name: {"config": c} for name, c in ops.items()}
    run_id = client.submit_job_execution(
        job,
        repository_location_name=LOCATION_NAME,
        run_config=run_config,
        tags=tags,
    )
    deadline = time.monotonic() + timeout_s
    status = "QUEUED"
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            break
        time.sleep(2.0)
    if status != "SUCCESS":
        link = f"http://{settings.stack_host}:{settings.stack_dagster_port}/runs/{run_id}"
        raise DemoStageError(f"job {job!r} run {run_id[:8]} ended {status}: see {link}")
    return run_id


def _transactions(settings: Settings, day: dt.date, limit: int) -> list[dict[str, Any]]:
    from lakehouse.simulator import Simulator, SimulatorConfig

    table = Simulator(SimulatorConfig.from_settings(settings)).simulate_day(day).transactions
    return scoring_requests(table.slice(0, limit))


def log_rows(settings: Settings) -> int:
    """Rows in the prediction log (0 before its first commit)."""
    from lakehouse.delta import read_table, table_exists

    uri, options = settings.prediction_log_uri, settings.storage_options
    if not table_exists(uri, options):
        return 0
    return read_table(uri, ["transaction_id"], storage_options=options).num_rows


def wait_for_champion(settings: Settings, version: str, timeout_s: float = 300.0) -> dict:
    """Wait until the stack's service is ready and serves ``version`` as champion."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{settings.stack_service_url}/readyz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            body = {}
        served = ((body.get("serving") or {}).get("champion") or {}).get("version")
        if body.get("ready") and str(served) == version:
            return body
        time.sleep(1.0)
    raise DemoStageError(
        f"the service did not serve champion {version} within {timeout_s:.0f} s: {body}"
    )


def score_day_through_stack(settings: Settings, say: Say, limit: int = 2_000) -> dict:
    """Score up to ``limit`` transactions of the next day on the stack's running service."""
    day = next_day(settings)
    transactions = _transactions(settings, day, limit)
    before = log_rows(settings)
    headers = {"X-API-Key": settings.serving_api_keys[0]}
    statuses: Counter[int] = Counter()
    results = []
    with httpx.Client(base_url=settings.stack_service_url, headers=headers, timeout=60) as client:
        for tx in transactions[:5]:
            answer = client.post("/v1/score", json={"transaction": tx})
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                results.append(answer.json())
        for start in range(5, len(transactions), settings.serving_max_batch):
            chunk = transactions[start : start + settings.serving_max_batch]
            answer = client.post("/v1/score/batch", json={"transactions": chunk})
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                results.extend(answer.json()["results"])
    if set(statuses) != {200}:
        raise DemoStageError(f"scoring {day} answered {dict(statuses)} (HTTP status: count)")
    # The service commits its log every serving_log_flush_s: wait for the rows to land.
    deadline = time.monotonic() + 60
    logged = log_rows(settings) - before
    while logged < len(results) and time.monotonic() < deadline:
        time.sleep(1.0)
        logged = log_rows(settings) - before
    summary = {
        "day": day.isoformat(),
        "scored": len(results),
        "degraded": sum(r["degraded"] for r in results),
        "decisions": dict(Counter(r["decision"] for r in results)),
        "model_versions": sorted({r["model_version"] for r in results}),
        "prediction_log_rows": logged,
    }
    say(
        f"live day {day}: {summary['scored']:,} transactions scored by model "
        f"{', '.join(summary['model_versions'])} ({summary['decisions']}), "
        f"{summary['degraded']} degraded, {logged:,} rows in the prediction log"
    )
    return summary


def run_prod_demo(
    settings: Settings, say: Say, force: bool = False, live_limit: int = 2_000
) -> dict[str, Any]:
    """Land the source, run every job through the daemon, score the next day on the stack."""
    from cli.demo import FEED_OPS, land_source
    from ml.registry import champion_summary
    from orchestration.partitions import partition_range_tags

    timings: dict[str, float] = {}

    def stage(name: str, call: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = call()
        timings[name] = round(time.perf_counter() - started, 1)
        say(f"{name}: {timings[name]:.1f} s")
        return result

    all_days = partition_range_tags(settings.sim_start_date, settings.sim_end_date)
    forced = {name: {"force": True} for name in FEED_OPS} if force else None
    say(
        f"production demo: {settings.sim_customers:,} customers, {settings.sim_days} days, "
        f"Dagster at http://{settings.stack_host}:{settings.stack_dagster_port}"
    )
    stage("land", lambda: land_source(settings, say))
    stage("ingest", lambda: run_through_daemon(settings, "ingest", all_days, forced))
    stage("dbt", lambda: run_through_daemon(settings, "transform", all_days))
    stage("feast", lambda: run_through_daemon(settings, "materialize_features"))
    stage("train_promote", lambda: run_through_daemon(settings, "retraining"))
    say(champion_summary(settings))
    last_day = settings.sim_end_date.isoformat()
    tags = {"dagster/partition": last_day}
    stage("batch_scoring", lambda: run_through_daemon(settings, "batch_scoring", tags))
    version = _champion_version(settings)
    stage("serve_ready", lambda: wait_for_champion(settings, version))
    live = stage("serve", lambda: score_day_through_stack(settings, say, live_limit))
    return {"timings_s": timings, "champion": version, "live": live}


def _champion_version(settings: Settings) -> str:
    from mlflow.tracking import MlflowClient

    from fraudops.contracts import CHAMPION

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    return str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version)
