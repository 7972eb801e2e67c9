"""Lakehouse domain: raw feeds, master data, quarantine, their checks and schedule."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.lakehouse.assets import build_assets
from orchestration.defs.lakehouse.schedules import build_daily_schedule, build_ingest_job


def build_defs(partitions: dg.PartitionsDefinition) -> dg.Definitions:
    """Definitions of the lakehouse domain."""
    job = build_ingest_job()
    return dg.Definitions(
        assets=build_assets(partitions),
        jobs=[job],
        schedules=[build_daily_schedule(job)],
    )
