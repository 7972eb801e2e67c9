"""Delayed-label figures on a frame small enough to check by hand."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from fraudops.settings import get_settings
from monitoring.performance import DayPerformance, day_figures

DAY = dt.date(2018, 6, 1)


@pytest.fixture
def labelled() -> pd.DataFrame:
    """Eight answers, three frauds (scenarios 2, 2, 4)."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7, 8],
            "tx_date": [DAY] * 8,
            "score": [0.95, 0.92, 0.60, 0.55, 0.30, 0.20, 0.10, 0.05],
            "decision": ["decline", "decline", "review", "review"] + ["approve"] * 4,
            "is_fraud": [1, 0, 1, 0, 0, 0, 1, 0],
            "fraud_scenario": [2, 0, 2, 0, 0, 0, 4, 0],
        }
    )


def test_figures_of_a_hand_checked_day(labelled):
    figures = day_figures(labelled)
    # Frauds at ranks 1, 3 and 7: AP = (1/1 + 2/3 + 3/7) / 3.
    assert figures["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 7) / 3)
    # Top-100 cards hold all 8 cards, 3 of them compromised: 3 / 100.
    assert figures["card_precision_at_100"] == pytest.approx(0.03)
    squared = [(0.95 - 1) ** 2, 0.92**2, (0.6 - 1) ** 2, 0.55**2, 0.3**2, 0.2**2, 0.9**2, 0.05**2]
    assert figures["brier"] == pytest.approx(sum(squared) / 8)
    assert (figures["decline_precision"], figures["decline_recall"]) == (0.5, pytest.approx(1 / 3))
    assert (figures["review_precision"], figures["review_recall"]) == (0.5, pytest.approx(1 / 3))
    assert figures["scenario_recall"] == {"scenario_2": 1.0, "scenario_4": 0.0}
    assert figures["scenario_frauds"] == {"scenario_2": 2, "scenario_4": 1}
    assert (figures["rows"], figures["frauds"]) == (8, 3)


def test_a_day_without_declines_has_no_decline_precision(labelled):
    labelled["decision"] = "approve"
    figures = day_figures(labelled)
    assert figures["decline_precision"] != figures["decline_precision"]  # NaN
    assert figures["decline_recall"] == 0.0


def _performance(**changes) -> DayPerformance:
    values = {
        "day": DAY,
        "rows": 1_000,
        "frauds": 40,
        "model_version": "3",
        "average_precision": 0.50,
        "card_precision_at_100": 0.20,
        "brier": 0.02,
        "decline_precision": 0.9,
        "decline_recall": 0.4,
        "review_precision": 0.5,
        "review_recall": 0.2,
        "scenario_recall": {"scenario_2": 0.6, "scenario_4": 0.1},
        "scenario_frauds": {"scenario_2": 30, "scenario_4": 10},
        "champion_test": {"average_precision": 0.70, "card_precision_at_100": 0.25},
    }
    return DayPerformance(**{**values, **changes})


def test_floors_name_the_ap_drop_and_the_missed_scenario():
    performance = _performance()
    assert performance.ap_drop == pytest.approx(0.20)
    reasons = performance.below_floors(get_settings())
    assert len(reasons) == 2
    assert reasons[0].startswith("average precision 0.500 is 0.200 below the test AP 0.700")
    assert reasons[1] == "scenario_4 recall 0.100 is below the floor 0.250 on 10 frauds"


def test_floors_judge_only_days_and_scenarios_with_enough_frauds():
    assert _performance(frauds=3).below_floors(get_settings()) == []
    few = _performance(average_precision=0.69, scenario_frauds={"scenario_2": 30, "scenario_4": 2})
    assert few.below_floors(get_settings()) == []


def test_a_version_without_test_figures_has_no_ap_drop():
    performance = _performance(champion_test={})
    assert performance.ap_drop != performance.ap_drop  # NaN
    assert performance.below_floors(get_settings(performance_min_scenario_recall=0.0)) == []


def test_figures_round_trip_through_json_values():
    performance = _performance(challenger={"average_precision": 0.6}, challenger_version="4")
    assert DayPerformance.from_dict(performance.to_dict()) == performance
