"""Monitoring domain: profiles, drift report, delayed-label performance, the retraining loop."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.monitoring.assets import build_assets
from orchestration.defs.monitoring.schedules import build_performance_job
from orchestration.defs.monitoring.sensors import build_sensors


def build_defs(partitions: dg.PartitionsDefinition, label_delay_days: int) -> dg.Definitions:
    """Definitions of the monitoring domain over the lakehouse's daily ``partitions``."""
    return dg.Definitions(
        assets=build_assets(partitions, label_delay_days),
        jobs=[build_performance_job()],
        sensors=build_sensors(),
    )
