"""The ingestion job and its daily schedule."""

from __future__ import annotations

import dagster as dg

INGEST_JOB = "ingest"


def build_ingest_job(partitions: dg.PartitionsDefinition) -> dg.UnresolvedAssetJobDefinition:
    """Ingest master data and both feeds for the targeted days, in one run."""
    return dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.groups("lakehouse"),
        partitions_def=partitions,
        description="Land, validate and write the raw Delta tables for a day or a range of days.",
    )


def build_daily_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Every day at 01:00 UTC, ingest the day that just ended."""
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=1, name="daily_ingest")
