"""Partitioning shared by every daily asset."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from fraudops.settings import Settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per simulated day (UTC), from the first to the last day of the source."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.sim_start_date.isoformat(),
        end_date=(settings.sim_end_date + dt.timedelta(days=1)).isoformat(),
        timezone="UTC",
    )


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days of the partition key range a run targets."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def partition_range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags for one run over every day from ``first`` to ``last`` (a single-run backfill)."""
    # Dagster's documented tag names; the constants that spell them are private to it.
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
