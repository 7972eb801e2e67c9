"""A code location of one cheap daily-partitioned asset, for backfills through the run queue.

Its runs cost what any run of the daemon costs (a worker process, the instance's storage) and
almost nothing of their own, so what a backfill of it measures is the queue: how many runs
the ``QueuedRunCoordinator`` lets run at once, and how long many days take under a limit.
Loaded by ``dagster code-server start -m tests.production.backfill_location`` (the runs import
it too): only Dagster is imported (and no ``from __future__ import annotations``: Dagster reads the
``context`` annotation).
"""

import time

import dagster as dg

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-02-01", timezone="UTC")
# Long enough that the runs the queue lets through at once overlap in their asset step too.
WORK_S = 1.0


# One run per day (Dagster's default for an asset without a policy, stated here).
@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.multi_run(1))
def daily_marker(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """One day's marker: sleeps ``WORK_S`` and records its partition."""
    time.sleep(WORK_S)
    return dg.MaterializeResult(metadata={"day": context.partition_key})


@dg.asset
def side_marker() -> dg.MaterializeResult:
    """An unpartitioned asset, for runs that are not a backfill's (a schedule's stand-in)."""
    time.sleep(WORK_S)
    return dg.MaterializeResult()


side_job = dg.define_asset_job("side_job", selection=[side_marker])

defs = dg.Definitions(assets=[daily_marker, side_marker], jobs=[side_job])
