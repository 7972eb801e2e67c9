"""Time-ordered evaluation protocol: training window, a gap of the label delay, test window.

The newest ``test_days`` labelled days are the test window. Before it lies a gap of the label
delay (transactions whose labels were not yet known when the model would have been trained),
and before that the training window. The validation split used by the hyperparameter search is
the same layout shifted back by ``test_days``, so it never touches the test window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudops.settings import Settings


@dataclass(frozen=True)
class TimeSplit:
    """Inclusive day ranges of a training window and the test window after the gap."""

    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date

    def as_params(self, prefix: str = "") -> dict[str, str]:
        """The window bounds as flat strings (for MLflow params and tags)."""
        return {f"{prefix}{k}": v.isoformat() for k, v in self.__dict__.items()}


def time_split(
    last_day: dt.date, train_days: int, delay_days: int, test_days: int, shift_days: int = 0
) -> TimeSplit:
    """The split whose test window ends on ``last_day - shift_days``."""
    test_end = last_day - dt.timedelta(days=shift_days)
    test_start = test_end - dt.timedelta(days=test_days - 1)
    train_end = test_start - dt.timedelta(days=delay_days + 1)
    train_start = train_end - dt.timedelta(days=train_days - 1)
    return TimeSplit(train_start, train_end, test_start, test_end)


def labelled_days_needed(settings: Settings) -> int:
    """Labelled days the protocol's (validation, test) splits need: train, gap, two test windows."""
    return settings.train_days + settings.label_delay_days + 2 * settings.test_days


def protocol_splits(frame: pd.DataFrame, settings: Settings) -> tuple[TimeSplit, TimeSplit]:
    """The (validation, test) splits of a training frame under the configured protocol."""
    last_day = frame["tx_date"].max()
    args = (last_day, settings.train_days, settings.label_delay_days, settings.test_days)
    test = time_split(*args)
    validation = time_split(*args, shift_days=settings.test_days)
    first_day = frame["tx_date"].min()
    if validation.train_start < first_day:
        raise ValueError(
            f"training set covers {first_day}..{last_day}, the protocol needs "
            f"{labelled_days_needed(settings)} labelled "
            "days; ingest more days or lower FRAUDOPS_TRAIN_DAYS / FRAUDOPS_TEST_DAYS"
        )
    return validation, test


def between(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Rows whose transaction day lies in ``start..end`` (inclusive)."""
    return frame[(frame["tx_date"] >= start) & (frame["tx_date"] <= end)]


def known_compromised_mask(
    test: pd.DataFrame, history: pd.DataFrame, delay_days: int, memory_days: int
) -> pd.Series:
    """True for test rows whose card had a fraud reported in the ``memory_days`` before its day.

    A fraud is reported ``delay_days`` after the transaction; the investigators then block
    the card, so scoring it again would inflate the figures. After ``memory_days`` the card
    counts as reissued (the simulator keeps customer ids for life).
    """
    frauds = history.loc[history["is_fraud"] == 1, ["customer_id", "tx_datetime"]]
    reports = pd.DataFrame(
        {
            "customer_id": frauds["customer_id"].to_numpy(),
            "known_at": frauds["tx_datetime"] + pd.Timedelta(days=delay_days),
        }
    )
    rows = pd.DataFrame(
        {
            "row": np.arange(len(test)),
            "customer_id": test["customer_id"].to_numpy(),
            "day_start": pd.to_datetime(test["tx_date"]).dt.tz_localize("UTC").to_numpy(),
        }
    )
    pairs = rows.merge(reports, on="customer_id")
    recent = (pairs["known_at"] < pairs["day_start"]) & (
        pairs["known_at"] >= pairs["day_start"] - pd.Timedelta(days=memory_days)
    )
    known = np.zeros(len(test), dtype=bool)
    known[pairs.loc[recent, "row"].unique()] = True
    return pd.Series(known, index=test.index)


def train_test(
    frame: pd.DataFrame, split: TimeSplit, delay_days: int, memory_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and test rows of ``split``; test drops cards already known compromised."""
    train = between(frame, split.train_start, split.train_end)
    test = between(frame, split.test_start, split.test_end)
    known = known_compromised_mask(test, frame, delay_days, memory_days)
    return train.reset_index(drop=True), test[~known.to_numpy()].reset_index(drop=True)
