"""The ingestion job and the daily schedule: ingest the new day, then run dbt for it."""

from __future__ import annotations

import dagster as dg

INGEST_JOB = "ingest"
DAILY_JOB = "daily"
# The dbt layers (orchestration/defs/dbt); an empty selection when that domain is not loaded.
TRANSFORM_SELECTION = dg.AssetSelection.key_prefixes(["staging"], ["intermediate"], ["marts"])


def build_ingest_job() -> dg.UnresolvedAssetJobDefinition:
    """Ingest master data and both feeds for the targeted days, in one run."""
    return dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.groups("lakehouse"),
        description="Land, validate and write the raw Delta tables for a day or a range of days.",
    )


def build_daily_job(ingest: dg.UnresolvedAssetJobDefinition) -> dg.UnresolvedAssetJobDefinition:
    """The ingest job's assets, then the dbt models (dbt runs after its raw sources)."""
    return dg.define_asset_job(
        DAILY_JOB,
        selection=ingest.selection | TRANSFORM_SELECTION,
        description="The daily pipeline: ingest the new day, then dbt build from that day.",
    )


def build_daily_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Every day at 01:00 UTC, run the ingest ``job`` for the day that just ended, then dbt."""
    return dg.build_schedule_from_partitioned_job(
        build_daily_job(job), hour_of_day=1, name="daily_ingest"
    )
