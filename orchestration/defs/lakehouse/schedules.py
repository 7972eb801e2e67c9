"""The ingestion job and the daily schedule: the whole day, from ingestion to the drift report."""

from __future__ import annotations

import dagster as dg

INGEST_JOB = "ingest"
DAILY_JOB = "daily"
# The dbt layers (orchestration/defs/dbt); an empty selection when that domain is not loaded.
TRANSFORM_SELECTION = dg.AssetSelection.key_prefixes(["staging"], ["intermediate"], ["marts"])
# The rest of the day, by key path so that a code location without one of these domains
# still loads (a key prefix selects nothing then); tests/orchestration checks the paths
# against the domains' asset keys.
DAY_AFTER_TRANSFORM = dg.AssetSelection.key_prefixes(
    ["features", "feast_registry"],
    ["features", "online_features"],
    ["serving", "batch_scores"],
    ["monitoring", "reference_profile"],
    ["monitoring", "production_profile"],
    ["monitoring", "drift_report"],
)


def build_ingest_job() -> dg.UnresolvedAssetJobDefinition:
    """Ingest master data and both feeds for the targeted days, in one run."""
    return dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.groups("lakehouse"),
        description="Land, validate and write the raw Delta tables for a day or a range of days.",
    )


def build_daily_job(ingest: dg.UnresolvedAssetJobDefinition) -> dg.UnresolvedAssetJobDefinition:
    """Ingestion, dbt, Feast, batch scores, profiles and drift: one run, ordered by lineage."""
    return dg.define_asset_job(
        DAILY_JOB,
        selection=ingest.selection | TRANSFORM_SELECTION | DAY_AFTER_TRANSFORM,
        description=(
            "The daily pipeline for a day (or a range of days, in one run): ingest, dbt build "
            "from that day, Feast apply and online materialization, batch scores, the "
            "champion's reference profile (built once per version), the production profile "
            "and the drift report. The day's model performance follows when its labels arrive, "
            "label_delay_days later (the monitoring_automation sensor)."
        ),
    )


def build_daily_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Every day at 01:00 UTC, run the daily job for the day that just ended."""
    return dg.build_schedule_from_partitioned_job(
        build_daily_job(job), hour_of_day=1, name="daily_ingest"
    )
