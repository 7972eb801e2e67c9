"""A training frame computed straight from the raw tables with the reference feature functions.

It follows the training-set contract of the feature store domain (same columns, same as-of
semantics, same labelled-rows rule) without Feast: tests and benchmarks use it, and it is a
cross-check for the Feast-built table.
"""

from __future__ import annotations

import pandas as pd

from features.definitions import (
    as_of_timestamps,
    customer_features,
    terminal_features,
    transaction_features,
)
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings
from lakehouse import delta
from ml.dataset import TRAINING_COLUMNS, validate_training_frame


def _raw(settings: Settings, name: str) -> pd.DataFrame:
    return delta.read_table(
        settings.table_uri("raw", name), storage_options=settings.storage_options
    ).to_pandas()


def build_reference_training_set(settings: Settings) -> pd.DataFrame:
    """Labelled transactions joined point-in-time with the reference customer/terminal features."""
    tx = _raw(settings, "transactions")
    reports = _raw(settings, "fraud_reports")
    tx["tx_datetime"] = pd.to_datetime(tx["tx_datetime"], utc=True)
    reports["reported_at"] = pd.to_datetime(reports["reported_at"], utc=True)
    first, last = tx["tx_datetime"].min().date(), tx["tx_datetime"].max().date()
    as_of = as_of_timestamps(first, last)
    # A transaction on day D uses the feature row of midnight D (the end of D-1).
    tx["feature_timestamp"] = tx["tx_datetime"].dt.floor("D")
    tx = tx[tx["feature_timestamp"] > pd.Timestamp(first, tz="UTC")]
    customers = customer_features(tx, _raw(settings, "customers")["customer_id"], as_of)
    terminals = terminal_features(
        tx, reports, _raw(settings, "terminals")["terminal_id"], as_of, settings.label_delay_days
    )
    frame = tx.merge(customers, on=["customer_id", "feature_timestamp"], how="left")
    frame = frame.merge(terminals, on=["terminal_id", "feature_timestamp"], how="left")
    request = transaction_features(frame["tx_datetime"], frame["tx_amount"])
    frame[request.columns] = request
    by_tx = reports.set_index("transaction_id")["fraud_scenario"]
    frame["fraud_scenario"] = frame["transaction_id"].map(by_tx).fillna(0).astype("int8")
    frame["is_fraud"] = (frame["fraud_scenario"] > 0).astype("int8")
    # Only rows whose label is known by the newest report may be used (as negatives or not).
    label_at = frame["tx_datetime"] + pd.Timedelta(days=settings.label_delay_days)
    frame = frame[label_at <= reports["reported_at"].max()]
    # Fill rule of the contract: an entity without a feature row gets 0 and is flagged.
    entity = [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]
    frame["features_missing"] = frame[entity].isna().any(axis=1).astype("int8")
    frame[entity] = frame[entity].fillna(0)
    return validate_training_frame(frame[TRAINING_COLUMNS])
