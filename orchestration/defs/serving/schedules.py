"""The batch-scoring job: the selected days scored by the current champion."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.serving.assets import BATCH_SCORES


def build_batch_scoring_job() -> dg.UnresolvedAssetJobDefinition:
    """``batch_scoring``: score the selected days with the current champion."""
    return dg.define_asset_job("batch_scoring", selection=dg.AssetSelection.assets(BATCH_SCORES))
