"""Feature store domain: Feast registry, online store materialization, training set, skew check."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.features.assets import FEAST_REGISTRY, ONLINE_FEATURES, build_assets
from orchestration.defs.features.checks import build_checks

MATERIALIZE_JOB = "materialize_features"


def build_defs() -> dg.Definitions:
    """Definitions of the feature store domain."""
    job = dg.define_asset_job(
        MATERIALIZE_JOB,
        selection=dg.AssetSelection.assets(FEAST_REGISTRY, ONLINE_FEATURES),
        description="Apply the Feast definitions, materialize new as-of days, check skew.",
    )
    return dg.Definitions(
        assets=build_assets(), asset_checks=build_checks(ONLINE_FEATURES), jobs=[job]
    )
