"""Evaluation metrics against hand-computed small cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml.baseline import amount_rule_scores
from ml.metrics import (
    card_precision_at_k,
    classification_metrics,
    expected_calibration_error,
    slice_recall,
)

D1, D2, D3 = (dt.date(2018, 9, d) for d in (1, 2, 3))


def _rows(rows: list[tuple[dt.date, int, int, float]]) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame(rows, columns=["tx_date", "customer_id", "is_fraud", "score"])
    return frame, frame.pop("score").to_numpy()


def test_card_precision_scores_each_card_by_its_best_transaction() -> None:
    # Card 1's best row is genuine but another of its rows is fraud: the card is compromised.
    frame, scores = _rows(
        [
            (D1, 1, 0, 0.9),
            (D1, 1, 1, 0.1),
            (D1, 2, 0, 0.8),
            (D1, 2, 0, 0.7),
            (D1, 3, 1, 0.6),
        ]
    )
    assert card_precision_at_k(frame, scores, k=2) == pytest.approx(0.5)


def test_card_precision_excludes_cards_detected_on_earlier_days() -> None:
    frame, scores = _rows(
        [
            (D1, 1, 1, 0.9),  # day 1: top card 1 is compromised -> 1/1, card 1 detected
            (D1, 2, 1, 0.5),
            (D2, 1, 1, 0.99),  # day 2: card 1 excluded; top card 2 is genuine -> 0/1
            (D2, 2, 0, 0.4),
            (D2, 3, 1, 0.3),
            (D3, 2, 1, 0.9),  # day 3: card 2 was only flagged, not detected -> 1/1
        ]
    )
    assert card_precision_at_k(frame, scores, k=1) == pytest.approx(2 / 3)


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    frame, scores = _rows([(D1, 7, 1, 0.2), (D1, 7, 0, 0.1)])
    assert card_precision_at_k(frame, scores, k=100) == pytest.approx(0.01)


def test_expected_calibration_error_hand_case() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.6, 0.9])
    # bins [0, .5): mean .2 vs rate 0; [.5, 1]: mean .75 vs rate 1 -> (.2*2 + .25*2) / 4
    assert expected_calibration_error(labels, scores, bins=2) == pytest.approx(0.225)


def test_slice_recall_counts_only_frauds_of_each_slice() -> None:
    frame = pd.DataFrame(
        {
            "is_fraud": [1, 1, 1, 1, 0],
            "fraud_scenario": [1, 2, 2, 3, 0],
            "tx_amount": [300.0, 30.0, 40.0, 120.0, 10.0],
            "tx_during_night": [1, 0, 0, 0, 1],
            "tx_during_weekend": [0, 0, 0, 1, 1],
        }
    )
    recalls = slice_recall(frame, np.array([0.9, 0.6, 0.2, 0.1, 0.99]))
    assert recalls["recall_scenario_1"] == 1.0
    assert recalls["recall_scenario_2"] == 0.5
    assert recalls["recall_scenario_3"] == 0.0
    assert "recall_scenario_4" not in recalls  # no such fraud in the slice: no figure
    assert recalls["recall_night"] == 1.0
    assert recalls["recall_day"] == pytest.approx(1 / 3)
    assert recalls["recall_weekend"] == 0.0
    assert recalls["recall_amount_0_50"] == 0.5
    assert recalls["recall_amount_100_220"] == 0.0
    assert recalls["recall_amount_220_inf"] == 1.0


def test_amount_rule_flags_exactly_the_amounts_above_the_threshold() -> None:
    frame = pd.DataFrame({"tx_amount": [0.0, 100.0, 219.99, 220.01, 1000.0]})
    flagged = amount_rule_scores(frame) > 0.5
    assert flagged.tolist() == [False, False, False, True, True]


def test_perfect_scores_give_perfect_ranking_metrics() -> None:
    frame = pd.DataFrame(
        {
            "tx_date": [D1] * 4,
            "customer_id": [1, 2, 3, 4],
            "is_fraud": [1, 0, 1, 0],
            "fraud_scenario": [2, 0, 3, 0],
            "tx_amount": [10.0, 20.0, 30.0, 40.0],
            "tx_during_night": [0, 0, 0, 0],
            "tx_during_weekend": [0, 0, 0, 0],
        }
    )
    metrics = classification_metrics(frame, np.array([1.0, 0.0, 1.0, 0.0]))
    assert metrics["roc_auc"] == 1.0
    assert metrics["average_precision"] == 1.0
    assert metrics["brier"] == 0.0
    assert metrics["card_precision_at_100"] == pytest.approx(0.02)
