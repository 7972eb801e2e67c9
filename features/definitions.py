"""The reference feature definitions, in plain pandas: the readable specification.

The dbt marts compute the same values at scale; a test proves they agree. As-of semantics:

- A feature row with ``feature_timestamp`` T (midnight UTC starting day D) describes the entity
  as of the end of day D-1; a transaction at time t on day D uses the row with T = D 00:00.
- Customer windows of w days cover the w whole days D-w .. D-1: the count of transactions and
  their mean amount (0 when there are none).
- Terminal windows of w days are shifted back by the label delay d (7 days): they cover the days
  D-d-w .. D-d-1, and their risk is the share of those transactions reported as fraud by time
  T (a report is known once ``reported_at`` < T), 0 when there are none.
- Request-time features come from the transaction itself: the amount, a weekend flag and a
  night flag (hour <= 6, UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES, WINDOWS


def request_time_features(epoch_us: np.ndarray, amounts: np.ndarray) -> dict[str, np.ndarray]:
    """Request-time features from UTC epoch microseconds and amounts (numpy, no pandas)."""
    seconds = np.asarray(epoch_us, dtype="int64") // 1_000_000
    days = seconds // 86_400
    # 1970-01-01 was a Thursday: Monday=0 puts it at 3.
    weekday = (days + 3) % 7
    hour = (seconds - days * 86_400) // 3_600
    return {
        "tx_amount": np.asarray(amounts, dtype="float64"),
        "tx_during_weekend": (weekday >= 5).astype("int8"),
        "tx_during_night": (hour <= 6).astype("int8"),
    }


def transaction_features(tx_datetime: pd.Series, tx_amount: pd.Series) -> pd.DataFrame:
    """Request-time features of transactions, shared by training and serving."""
    ts = pd.to_datetime(tx_datetime, utc=True)
    epoch_us = ts.dt.tz_localize(None).to_numpy("datetime64[us]").astype("int64")
    return pd.DataFrame(
        request_time_features(epoch_us, tx_amount.to_numpy()), index=tx_datetime.index
    )


def as_of_timestamps(first_day: dt.date, last_day: dt.date) -> list[pd.Timestamp]:
    """Feature timestamps (midnight UTC) describing the ends of ``first_day``..``last_day``."""
    return [
        pd.Timestamp(first_day + dt.timedelta(days=i + 1), tz="UTC")
        for i in range((last_day - first_day).days + 1)
    ]


def _window(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    ts = frame["tx_datetime"]
    return frame[(ts >= start) & (ts < end)]


def customer_features(
    transactions: pd.DataFrame,
    customer_ids: Iterable[int],
    as_of: Sequence[pd.Timestamp],
) -> pd.DataFrame:
    """One row per customer and as-of timestamp with the customer window features."""
    customers = pd.Index(sorted(set(customer_ids)), name="customer_id")
    rows = []
    for ts in as_of:
        row = pd.DataFrame(index=customers)
        for w in WINDOWS:
            window = _window(transactions, ts - pd.Timedelta(days=w), ts)
            stats = window.groupby("customer_id")["tx_amount"].agg(["count", "mean"])
            stats = stats.reindex(customers)
            row[f"customer_id_nb_tx_{w}day_window"] = stats["count"].fillna(0).astype("int64")
            row[f"customer_id_avg_amount_{w}day_window"] = stats["mean"].fillna(0.0)
        row["feature_timestamp"] = ts
        rows.append(row.reset_index())
    return _ordered(rows, "customer_id", CUSTOMER_FEATURES)


def terminal_features(
    transactions: pd.DataFrame,
    fraud_reports: pd.DataFrame,
    terminal_ids: Iterable[int],
    as_of: Sequence[pd.Timestamp],
    delay_days: int,
) -> pd.DataFrame:
    """One row per terminal and as-of timestamp with the delayed terminal window features."""
    terminals = pd.Index(sorted(set(terminal_ids)), name="terminal_id")
    delay = pd.Timedelta(days=delay_days)
    rows = []
    for ts in as_of:
        known = fraud_reports.loc[fraud_reports["reported_at"] < ts, "transaction_id"]
        row = pd.DataFrame(index=terminals)
        for w in WINDOWS:
            window = _window(transactions, ts - delay - pd.Timedelta(days=w), ts - delay)
            is_fraud = window["transaction_id"].isin(known).astype("int64")
            stats = is_fraud.groupby(window["terminal_id"]).agg(["count", "sum"]).reindex(terminals)
            count = stats["count"].fillna(0).astype("int64")
            row[f"terminal_id_nb_tx_{w}day_window"] = count
            row[f"terminal_id_risk_{w}day_window"] = np.where(
                count > 0, stats["sum"].fillna(0) / count.where(count > 0, 1), 0.0
            )
        row["feature_timestamp"] = ts
        rows.append(row.reset_index())
    return _ordered(rows, "terminal_id", TERMINAL_FEATURES)


def _ordered(rows: list[pd.DataFrame], key: str, features: list[str]) -> pd.DataFrame:
    frame = pd.concat(rows, ignore_index=True)
    return frame[[key, "feature_timestamp", *features]].sort_values(
        [key, "feature_timestamp"], ignore_index=True
    )
