"""Maintenance domain: compaction and vacuum of every Delta table (job ``maintenance``)."""

import dagster as dg

from orchestration.defs.maintenance.ops import build_maintenance_job
from orchestration.defs.maintenance.schedules import build_weekly_schedule


def build_defs() -> dg.Definitions:
    """Definitions of the maintenance domain."""
    job = build_maintenance_job()
    return dg.Definitions(jobs=[job], schedules=[build_weekly_schedule(job)])
