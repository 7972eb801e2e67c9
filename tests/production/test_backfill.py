"""A backfill of many daily partitions through the stack's run queue, its limits held.

The stack's Dagster instance (PostgreSQL, ``QueuedRunCoordinator``: at most 2 runs at once,
backfill runs at most 1 of them) with its real daemon and webserver, on a cheap daily asset
(tests/production/backfill.py). A backfill of 12 days runs while two other runs are
submitted: every day is materialized once, neither limit is ever exceeded, and the other
runs take the slot the backfill leaves free instead of waiting for it to end. The figures of
several limits are ``benchmarks/bench_backfill.py``'s.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.production.backfill import (
    BACKFILL_TAG,
    backfill_finished,
    backfill_instance,
    days,
    instance_of,
    launch_backfill,
    measure,
    runs_finished,
    stack_limits,
    submit_side_run,
    wait_until,
)
from tests.production.conftest import require_stack_services

pytestmark = [pytest.mark.services, pytest.mark.e2e]

# Serial under the stack's backfill limit of 1, about 10 s a day here: enough days that the
# queue holds many at once, few enough for an end-to-end test.
DAYS = 12


def test_a_backfill_of_many_days_stays_within_the_queue_limits(tmp_path):
    import dagster as dg

    require_stack_services()
    keys = days(DAYS)
    with backfill_instance(tmp_path / "var") as settings, instance_of(settings) as instance:
        limits = stack_limits(settings)
        launched_at = time.time()
        backfill_id = launch_backfill(settings, keys)
        # The other runs are submitted once the backfill's runs are queued, so they are behind
        # them in the queue.
        wait_until(
            instance,
            lambda i: i.get_runs_count(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})) >= DAYS,
            timeout_s=300,
            what="the backfill's runs were not all requested",
        )
        side = [submit_side_run(settings) for _ in range(2)]
        wait_until(instance, backfill_finished(backfill_id), 900, "the backfill did not finish")
        wait_until(instance, runs_finished(side), 300, "the other runs did not finish")
        figures = measure(instance, backfill_id, keys, launched_at)
    print("\nFIGURE backfill: " + json.dumps({"limits": vars(limits), **figures}))
    assert (limits.max_concurrent_runs, limits.backfill_runs) == (2, 1)
    assert figures["backfill_status"] == "COMPLETED_SUCCESS"
    # Every day once: one run each, one materialization each, none missing.
    assert figures["backfill_runs"] == figures["backfill_runs_succeeded"] == DAYS
    assert figures["runs_per_day"] == {"min": 1, "max": 1}
    assert figures["materializations_per_day"] == {"min": 1, "max": 1}
    # The limits, from the runs' own status events: never more at once than the queue allows.
    assert figures["peak_runs_at_once"] <= limits.max_concurrent_runs
    assert figures["peak_backfill_runs_at_once"] <= limits.backfill_runs
    # The other runs were not starved: they ran in the slot the backfill may not take.
    assert [r["status"] for r in figures["other_runs"]] == ["SUCCESS", "SUCCESS"]
    assert all(r["ended_before_backfill"] for r in figures["other_runs"])
