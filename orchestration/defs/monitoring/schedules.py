"""The monitoring job: the delayed-label performance of chosen days, for humans and backfills.

The daily job (orchestration/defs/lakehouse/schedules.py) runs the profiles and the drift
report with the rest of the day; the performance of a day runs when its labels arrive (the
automation sensor of orchestration/defs/monitoring/sensors.py) or through this job.
"""

from __future__ import annotations

import dagster as dg

from orchestration.defs.monitoring.assets import MODEL_PERFORMANCE

MODEL_PERFORMANCE_JOB = "model_performance"


def build_performance_job() -> dg.UnresolvedAssetJobDefinition:
    """``model_performance``: the figures of the selected days (their labels must be known)."""
    return dg.define_asset_job(
        MODEL_PERFORMANCE_JOB,
        selection=dg.AssetSelection.assets(MODEL_PERFORMANCE),
        description=(
            "Delayed-label performance of the selected days; fails for a day whose fraud "
            "reports do not yet reach day + label_delay_days."
        ),
    )
