"""Names every layer agrees on: model inputs, the training-set columns, the registry aliases.

These are contracts, not computations: the feature layer computes the columns named here, the
model layer trains on them, the service answers with them and monitoring profiles them. Each
name has this one home.
"""

from __future__ import annotations

# Feature windows in days (the dbt project's `feature_windows` variable holds the same list).
WINDOWS: tuple[int, ...] = (1, 7, 30)

TRANSACTION_FEATURES = ["tx_amount", "tx_during_weekend", "tx_during_night"]
CUSTOMER_FEATURES = [
    name
    for w in WINDOWS
    for name in (f"customer_id_nb_tx_{w}day_window", f"customer_id_avg_amount_{w}day_window")
]
TERMINAL_FEATURES = [
    name
    for w in WINDOWS
    for name in (f"terminal_id_nb_tx_{w}day_window", f"terminal_id_risk_{w}day_window")
]
ENTITY_FEATURES = [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]
# The 15 model inputs, in the order models take them.
FEATURE_COLUMNS = [*TRANSACTION_FEATURES, *ENTITY_FEATURES]
# Set to 1 on a row whose entity features were missing and filled with the fallback values.
MISSING_FLAG = "features_missing"

KEY_COLUMNS = ["transaction_id", "tx_datetime", "customer_id", "terminal_id"]
LABEL_COLUMNS = ["is_fraud", "fraud_scenario"]
TRAINING_COLUMNS = [*KEY_COLUMNS, *FEATURE_COLUMNS, MISSING_FLAG, *LABEL_COLUMNS, "tx_date"]

# Registry aliases: the version serving all traffic, and the newest candidate.
CHAMPION = "champion"
CHALLENGER = "challenger"

# Fraud scenario 1 of the reference data: every amount above this is fraud.
AMOUNT_FRAUD_THRESHOLD = 220.0


def is_count(feature: str) -> bool:
    """Whether ``feature`` is a transaction count (an integer; the others are floats)."""
    return "_nb_tx_" in feature


def is_flag(feature: str) -> bool:
    """Whether ``feature`` is a 0/1 flag of the transaction (weekend, night)."""
    return feature.startswith("tx_during")


def feature_dtype(feature: str) -> str:
    """The numpy dtype of an entity or model input column: int64 counts, float64 otherwise."""
    return "int64" if is_count(feature) else "float64"
