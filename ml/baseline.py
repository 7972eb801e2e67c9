"""The trivial baseline every model must beat: a rule on the amount alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudops.contracts import AMOUNT_FRAUD_THRESHOLD


def amount_rule_scores(
    frame: pd.DataFrame, threshold: float = AMOUNT_FRAUD_THRESHOLD
) -> np.ndarray:
    """Score amount / (amount + threshold): ranks by amount, above 1/2 exactly when > threshold."""
    amount = frame["tx_amount"].to_numpy(dtype="float64").clip(min=0)
    return amount / (amount + threshold)
