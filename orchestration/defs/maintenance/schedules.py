"""The weekly maintenance schedule, stopped until started in the UI like the others."""

from __future__ import annotations

import dagster as dg

WEEKLY_SCHEDULE = "weekly_maintenance"


def build_weekly_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """Sundays at 03:00 UTC, two hours after the daily ingestion starts, run ``job``."""
    return dg.ScheduleDefinition(
        name=WEEKLY_SCHEDULE,
        job=job,
        cron_schedule="0 3 * * 0",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
