"""Backfills of many daily partitions through the run queue, under several queue limits.

Each configuration is a fresh Dagster instance of the local stack (its ``dagster.yaml`` on a
PostgreSQL database of its own, its code server, webserver and daemon; see
``tests/production/backfill.py``) on a cheap daily asset (one run per day, 1 s of work), with
the run queue's limits replaced by the configuration's. A backfill of ``--days`` days (default
24) is launched through the webserver as the UI does; the daemon's backfill loop requests the
runs and its run queue launches them. Per configuration: every day's runs and
materializations, the most runs in progress at once (from each run's ``RUN_STARTING`` event
to its end), the wall time from the launch to the last run's end, days per minute. The
behaviour under the stack's own limits is asserted by ``tests/production/test_backfill.py``.

The configurations: the stack's limits (2 runs at once, backfills 1), the same with the
queue drained every second instead of every 5 s, backfills allowed both slots, and the
Helm values' limits (8 at once, backfills 4) on this one machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_figures
from tests.production.backfill import (
    Limits,
    backfill_finished,
    backfill_instance,
    days,
    instance_of,
    launch_backfill,
    measure,
    wait_until,
)

CONFIGURATIONS = {
    "stack": Limits(2, 1),
    "stack_dequeue_1s": Limits(2, 1, dequeue_interval_seconds=1),
    "backfill_2_of_2": Limits(2, 2),
    "helm": Limits(8, 4),
}


def backfill_once(root: Path, limits: Limits, count: int) -> dict:
    """One backfill of ``count`` days on a fresh instance under ``limits``; its figures."""
    keys = days(count)
    with backfill_instance(root, limits) as settings, instance_of(settings) as instance:
        launched_at = time.time()
        backfill_id = launch_backfill(settings, keys)
        wait_until(instance, backfill_finished(backfill_id), 1_800, "the backfill did not finish")
        figures = measure(instance, backfill_id, keys, launched_at)
    return {"limits": dataclasses.asdict(limits), **figures}


def main(count: int = 24, selected: list[str] | None = None) -> dict:
    """Backfill ``count`` days under each configuration; print and write the figures."""
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-backfill-"))
    figures: dict[str, object] = {
        "days": count,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "configurations": {},
    }
    try:
        for name in selected or list(CONFIGURATIONS):
            result = backfill_once(root / name, CONFIGURATIONS[name], count)
            figures["configurations"][name] = result
            print(
                f"{name}: {result['limits']} -> {result['backfill_runs_succeeded']}/{count} runs "
                f"succeeded, materializations per day {result['materializations_per_day']}, "
                f"at most {result['peak_runs_at_once']} runs at once "
                f"({result['peak_backfill_runs_at_once']} of the backfill), "
                f"{result['wall_s']} s wall ({result['days_per_min']} days/min), "
                f"first run launched after {result['first_launch_s']} s, "
                f"a run holds its slot {result['run_slot_s_median']} s (median)",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["load_average_at_end"] = os.getloadavg()
    write_figures("backfill", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=24)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGURATIONS), default=None)
    args = parser.parse_args()
    main(args.days, args.only)
