"""Drift scores: whylogs' Hellinger distance per column, thresholds from the settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import get_settings
from monitoring.drift import DRIFT_COLUMNS, column_drift, hellinger, ranked, threshold_for
from monitoring.profiles import profile_frame


def _frame(seed: int, n: int = 5_000, amount_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.random(n) for name in FEATURE_COLUMNS})
    frame["tx_amount"] = rng.gamma(2.0, 30.0, n) * amount_scale
    frame["tx_during_night"] = (rng.random(n) < 0.2).astype("float64")
    frame["score"] = rng.beta(0.5, 8.0, n)
    return frame


@pytest.fixture(scope="module")
def reference():
    return profile_frame(_frame(1, 20_000))


def test_a_sample_of_the_same_distribution_does_not_drift(reference):
    drifts = column_drift(reference, profile_frame(_frame(2)), get_settings())
    assert set(drifts) == set(DRIFT_COLUMNS)
    assert all(d.algorithm == "hellinger" for d in drifts.values())
    assert max(d.score for d in drifts.values()) < 0.1
    assert not [d.column for d in drifts.values() if d.drifted]


def test_doubled_amounts_drift_and_rank_first(reference):
    drifts = column_drift(reference, profile_frame(_frame(3, amount_scale=2.0)), get_settings())
    order = ranked(drifts)
    assert order[0].column == "tx_amount"
    assert order[0].drifted and 0.2 < order[0].score <= 1.0
    assert [d.column for d in order if d.drifted] == ["tx_amount"]


def test_identical_profiles_score_zero(reference):
    drifts = column_drift(reference, reference, get_settings())
    assert max(d.score for d in drifts.values()) == pytest.approx(0.0, abs=1e-9)


def test_per_column_thresholds_override_the_default(reference):
    settings = get_settings(drift_threshold=0.5, drift_thresholds={"tx_amount": 0.9})
    assert threshold_for(settings, "tx_amount") == 0.9
    assert threshold_for(settings, "score") == 0.5
    drifts = column_drift(reference, profile_frame(_frame(3, amount_scale=2.0)), settings)
    assert drifts["tx_amount"].threshold == 0.9 and not drifts["tx_amount"].drifted


def test_the_weekend_flag_is_exempt_by_default():
    # A day is all weekdays or all weekend: against weeks of reference that is the calendar.
    assert threshold_for(get_settings(), "tx_during_weekend") == 1.0


def test_a_column_missing_from_a_profile_is_named(reference):
    partial = profile_frame(_frame(4).drop(columns=["score"]))
    with pytest.raises(KeyError, match="score"):
        column_drift(reference, partial, get_settings())


def test_scores_are_whylogs_own_drift_calculation(reference):
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores

    target = profile_frame(_frame(3, amount_scale=1.5))
    drifts = column_drift(reference, target, get_settings())
    drift_map = {c: hellinger(d.threshold) for c, d in drifts.items()}
    theirs = calculate_drift_scores(target.view, reference.view, drift_map=drift_map)
    assert {c: theirs[c]["statistic"] for c in drifts} == {c: d.score for c, d in drifts.items()}
    assert theirs["tx_amount"]["algorithm"] == "hellinger"
