"""Training domain: candidates, evaluation, registry and champion gate (job ``retraining``)."""

import dagster as dg

from orchestration.defs.training.assets import build_assets
from orchestration.defs.training.schedules import build_retraining_job


def build_defs() -> dg.Definitions:
    """Definitions of the training domain."""
    return dg.Definitions(assets=build_assets(), jobs=[build_retraining_job()])
