"""The time-ordered protocol: windows, the gap, and removal of known compromised cards."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from fraudops.settings import get_settings
from ml.split import known_compromised_mask, protocol_splits, time_split, train_test


def test_time_split_leaves_a_gap_of_the_label_delay() -> None:
    split = time_split(dt.date(2018, 9, 23), train_days=28, delay_days=7, test_days=7)
    assert split.test_end == dt.date(2018, 9, 23)
    assert split.test_start == dt.date(2018, 9, 17)
    assert split.train_end == dt.date(2018, 9, 9)  # 9-10 .. 9-16 is the 7-day gap
    assert split.train_start == dt.date(2018, 8, 13)


def test_validation_split_precedes_the_test_window(tiny_training_frame) -> None:
    settings = get_settings(train_days=12, test_days=7)
    validation, test = protocol_splits(tiny_training_frame, settings)
    assert test.test_end == tiny_training_frame["tx_date"].max()
    assert validation.test_end < test.test_start
    assert validation.train_start >= tiny_training_frame["tx_date"].min()


def test_protocol_refuses_too_short_a_history(tiny_training_frame) -> None:
    with pytest.raises(ValueError, match="FRAUDOPS_TRAIN_DAYS"):
        protocol_splits(tiny_training_frame, get_settings(train_days=60, test_days=7))


def _tx(day: int, card: int, fraud: int, hour: int = 12) -> dict[str, object]:
    ts = pd.Timestamp(2018, 9, day, hour, tz="UTC")
    return {"tx_datetime": ts, "tx_date": ts.date(), "customer_id": card, "is_fraud": fraud}


def test_cards_are_known_compromised_once_their_fraud_is_reported() -> None:
    history = pd.DataFrame(
        [_tx(1, card=1, fraud=1), _tx(5, card=2, fraud=1), _tx(1, card=3, fraud=0)]
    )
    test = pd.DataFrame([_tx(9, 1, 0), _tx(9, 2, 0), _tx(13, 2, 0), _tx(9, 3, 0), _tx(25, 1, 0)])
    # Card 1's fraud of 9-01 12:00 is reported 9-08 12:00, before day 9-09 starts.
    # Card 2's fraud of 9-05 is reported 9-12 12:00: unknown on 9-09, known on 9-13.
    # Card 3 never had a fraud; on 9-25 card 1's report is older than the 14-day memory.
    mask = known_compromised_mask(test, history, delay_days=7, memory_days=14)
    assert mask.tolist() == [True, False, True, False, False]


def test_train_and_test_rows_stay_in_their_windows(tiny_training_frame) -> None:
    settings = get_settings(train_days=12, test_days=7)
    _, split = protocol_splits(tiny_training_frame, settings)
    train, test = train_test(
        tiny_training_frame, split, settings.label_delay_days, settings.known_card_memory_days
    )
    assert train["tx_date"].max() <= split.train_end
    assert test["tx_date"].min() >= split.test_start
    assert (split.test_start - train["tx_date"].max()).days > settings.label_delay_days
    window = tiny_training_frame[tiny_training_frame["tx_date"] >= split.test_start]
    assert 0 < len(test) < len(window)  # some cards were known compromised and dropped
