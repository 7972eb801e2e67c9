"""Serving domain: daily batch scores (the online service runs under BentoML, not Dagster)."""

import dagster as dg

from orchestration.defs.serving.assets import build_assets
from orchestration.defs.serving.schedules import build_batch_scoring_job


def build_defs(partitions: dg.PartitionsDefinition) -> dg.Definitions:
    """Definitions of the serving domain."""
    return dg.Definitions(assets=build_assets(partitions), jobs=[build_batch_scoring_job()])
