"""The transform job: dbt build of every model, in full or from a given day."""

from __future__ import annotations

import dagster as dg

# The dbt layers; the lakehouse's daily schedule runs the same selection after ingestion.
from orchestration.defs.lakehouse.schedules import TRANSFORM_SELECTION

TRANSFORM_JOB = "transform"


def build_transform_job() -> dg.UnresolvedAssetJobDefinition:
    """Run dbt build (models and their tests), from the day of the run's partition tags."""
    return dg.define_asset_job(
        TRANSFORM_JOB,
        selection=TRANSFORM_SELECTION,
        description=(
            "dbt build from the raw Delta tables to the feature marts (Delta). Without partition "
            "tags, or from the first day, it rebuilds everything; from a later day "
            "(dagster/partition or a range start tag), it rebuilds from that day on."
        ),
    )
