"""Backfills of many daily partitions through the run queue of a real Dagster instance.

The instance is the local stack's (``cli.stack_components``): its ``dagster.yaml`` (storage on
PostgreSQL, the ``QueuedRunCoordinator`` and its limits, run retries and monitoring), its code
server, webserver and daemon as processes. Only the code location differs: the cheap daily
asset of :mod:`tests.production.backfill_location`. The backfill is launched as the UI does
(GraphQL ``launchPartitionBackfill`` on the webserver); the daemon's backfill loop requests one
run per day, its run queue launches them within the limits. What happened is read back from
the instance: the run records and their status events, the materializations.

Used by ``tests/production/test_backfill.py`` and ``benchmarks/bench_backfill.py``.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from cli.launcher import free_port
from cli.stack_components import (
    LOCATION_NAME,
    _admin_url,
    code_server,
    dagster_daemon,
    dagster_webserver,
    write_instance,
)
from fraudops.environ import exported, settings_env
from fraudops.settings import Settings, get_settings

LOCATION_MODULE = "tests.production.backfill_location"
ASSET = "daily_marker"
SIDE_JOB = "side_job"
# Dagster's documented tag names; the constants that spell them are private to it.
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


@dataclass(frozen=True)
class Limits:
    """The run queue's limits: runs at once, runs of backfills among them, and its tick."""

    max_concurrent_runs: int
    backfill_runs: int
    # How often the daemon drains the queue (Dagster's default: 5 s).
    dequeue_interval_seconds: int | None = None


def stack_limits(settings: Settings) -> Limits:
    """The limits of the ``dagster.yaml`` the stack wrote into ``settings``' Dagster home."""
    config = _instance_config(settings)["run_coordinator"]["config"]
    (backfill,) = [c for c in config["tag_concurrency_limits"] if c["key"] == BACKFILL_TAG]
    return Limits(
        config["max_concurrent_runs"], backfill["limit"], config.get("dequeue_interval_seconds")
    )


def days(count: int) -> list[str]:
    """The first ``count`` partition keys of the location's daily asset."""
    from tests.production.backfill_location import DAYS

    keys = DAYS.get_partition_keys()
    if count > len(keys):
        raise ValueError(f"the location has {len(keys)} days, not {count}")
    return keys[:count]


def _instance_config(settings: Settings) -> dict:
    return yaml.safe_load((settings.dagster_home_path / "dagster.yaml").read_text())


def _set_limits(settings: Settings, limits: Limits) -> None:
    config = _instance_config(settings)
    config["run_coordinator"]["config"].update(
        max_concurrent_runs=limits.max_concurrent_runs,
        tag_concurrency_limits=[{"key": BACKFILL_TAG, "limit": limits.backfill_runs}],
    )
    if limits.dequeue_interval_seconds is not None:
        config["run_coordinator"]["config"]["dequeue_interval_seconds"] = (
            limits.dequeue_interval_seconds
        )
    (settings.dagster_home_path / "dagster.yaml").write_text(yaml.safe_dump(config))


def _database(settings: Settings, statement: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(settings), autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@contextmanager
def backfill_instance(home: Path, limits: Limits | None = None) -> Iterator[Settings]:
    """The stack's Dagster processes on a database of their own, serving the backfill location.

    ``limits`` replaces the stack's queue limits (None keeps them). Afterwards the processes
    are stopped and the database dropped.
    """
    import dagster as dg

    settings = get_settings(
        profile="production",
        home=home,
        dagster_postgres_db=f"fraudops_backfill_{uuid.uuid4().hex[:8]}",
        stack_dagster_port=free_port(),
        stack_code_server_port=free_port(),
    )
    _database(settings, f'create database "{settings.dagster_postgres_db}"')
    processes = []
    try:
        write_instance(settings)
        if limits is not None:
            _set_limits(settings, limits)
        # The schema is created here once, so that the three processes do not race to create it.
        with exported(settings_env(settings)):
            dg.DagsterInstance.get().dispose()
        processes = [
            code_server(settings, module=LOCATION_MODULE),
            dagster_webserver(settings),
            dagster_daemon(settings),
        ]
        for managed in processes:
            managed.launch()
        for managed in processes:
            managed.wait()
        yield settings
    finally:
        for managed in reversed(processes):
            managed.stop()
        name = settings.dagster_postgres_db
        _database(settings, f'drop database if exists "{name}" with (force)')


@contextmanager
def instance_of(settings: Settings):
    """The Dagster instance of ``settings``, in this process."""
    import dagster as dg

    with exported(settings_env(settings)):
        instance = dg.DagsterInstance.get()
        try:
            yield instance
        finally:
            instance.dispose()


def launch_backfill(settings: Settings, keys: list[str]) -> str:
    """Launch a backfill of the daily asset over ``keys`` through the webserver; its id."""
    params = {"assetSelection": [{"path": [ASSET]}], "partitionNames": keys}
    answer = httpx.post(
        f"http://{settings.stack_host}:{settings.stack_dagster_port}/graphql",
        json={"query": LAUNCH, "variables": {"params": params}},
        timeout=120,
    )
    answer.raise_for_status()
    result = answer.json()["data"]["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill refused: {result}")
    return result["backfillId"]


def submit_side_run(settings: Settings) -> str:
    """Submit a run that is not a backfill's (as a schedule's would be); its id."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient(settings.stack_host, port_number=settings.stack_dagster_port)
    return client.submit_job_execution(SIDE_JOB, repository_location_name=LOCATION_NAME)


def wait_until(instance, predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate(instance)`` every half second until true; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate(instance):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} within {timeout_s:.0f} s")


def backfill_finished(backfill_id: str):
    """Predicate: the backfill reached a final status and every run it requested has ended."""
    import dagster as dg
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES

    def finished(instance) -> bool:
        backfill = instance.get_backfill(backfill_id)
        if backfill is None or backfill.status not in BULK_ACTION_TERMINAL_STATUSES:
            return False
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        return all(run.is_finished for run in runs)

    return finished


def runs_finished(run_ids: list[str]):
    """Predicate: every run of ``run_ids`` has ended."""

    def finished(instance) -> bool:
        return all(instance.get_run_by_id(run_id).is_finished for run_id in run_ids)

    return finished


def peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at any instant (one that ends as another starts: not both)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = highest = 0
    for _, step in edges:
        open_now += step
        highest = max(highest, open_now)
    return highest


def run_days(tags: dict[str, str]) -> list[str]:
    """The days a run targets: its partition, or every day of its partition range."""
    import dagster as dg

    from tests.production.backfill_location import DAYS

    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = (tags.get(tag) for tag in RANGE_TAGS)
    if start is None or end is None:
        return []
    return DAYS.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))


def measure(instance, backfill_id: str, keys: list[str], launched_at: float) -> dict:
    """What the runs of the instance did: per day, at once, and how long it all took.

    A run holds a slot of the queue from the daemon's launch (``RUN_STARTING``) to its end;
    ``RUN_STARTING`` to the end is therefore the interval whose overlap the limits bound. The
    records' ``start_time`` (the worker began) is inside it and is reported as well.
    """
    import dagster as dg

    records = instance.get_run_records()
    launched, slots, started = {}, {}, {}
    for record in records:
        run_id = record.dagster_run.run_id
        events = instance.all_logs(run_id, of_type={dg.DagsterEventType.RUN_STARTING})
        launched[run_id] = min(e.timestamp for e in events) if events else record.start_time
        slots[run_id] = (launched[run_id], record.end_time)
        started[run_id] = (record.start_time, record.end_time)
    ours = [r for r in records if r.dagster_run.tags.get(BACKFILL_TAG) == backfill_id]
    others = [r for r in records if BACKFILL_TAG not in r.dagster_run.tags]
    runs_per_day = Counter(day for r in ours for day in run_days(r.dagster_run.tags))
    materialized = Counter(
        record.partition_key
        for record in instance.fetch_materializations(dg.AssetKey(ASSET), limit=10_000).records
    )
    ids = [r.dagster_run.run_id for r in ours]
    succeeded = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in ours)
    last_end = max(r.end_time for r in ours)
    first_launch = min(launched[i] for i in ids)
    return {
        "days": len(keys),
        "backfill_status": instance.get_backfill(backfill_id).status.value,
        "backfill_runs": len(ours),
        "backfill_runs_succeeded": succeeded,
        "runs_per_day": {
            "min": min(runs_per_day[k] for k in keys),
            "max": max(runs_per_day.values()),
        },
        "materializations_per_day": {
            "min": min(materialized[k] for k in keys),
            "max": max(materialized.values()),
        },
        "days_not_materialized": [k for k in keys if materialized[k] == 0],
        "peak_runs_at_once": peak([slots[r.dagster_run.run_id] for r in records]),
        "peak_backfill_runs_at_once": peak([slots[i] for i in ids]),
        "peak_backfill_runs_executing": peak([started[i] for i in ids]),
        "wall_s": round(last_end - launched_at, 1),
        "first_launch_s": round(first_launch - launched_at, 1),
        "run_slot_s_median": round(statistics.median(e - s for s, e in (slots[i] for i in ids)), 2),
        "days_per_min": round(len(keys) / (last_end - launched_at) * 60, 1),
        "other_runs": [
            {
                "status": r.dagster_run.status.value,
                "ended_before_backfill": r.end_time is not None and r.end_time < last_end,
            }
            for r in others
        ],
    }
