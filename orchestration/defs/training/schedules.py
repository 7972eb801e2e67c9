"""The retraining job: the training set through the champion gate, run on request."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.training.assets import ML_KEYS

RETRAINING_JOB = "retraining"


def build_retraining_job() -> dg.UnresolvedAssetJobDefinition:
    """Training set (when defined in the code location) -> candidates -> ... -> champion."""
    return dg.define_asset_job(
        RETRAINING_JOB,
        # One level upstream of the ML assets is features/training_set.
        selection=dg.AssetSelection.assets(*ML_KEYS).upstream(depth=1),
        description=(
            "Rebuild the training set, train the XGBoost and torch candidates, evaluate, "
            "register and run the promotion gate."
        ),
    )
