"""Data-quality summary of a day of the log, on hand-made rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import get_settings
from monitoring.quality import QualitySummary, summarize_quality

DAY = dt.date(2018, 6, 1)
CUSTOMERS = np.arange(1, 101)
TERMINALS = np.arange(1, 201)


def _clean(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {name: rng.integers(0, 5, n).astype("float64") for name in FEATURE_COLUMNS}
    )
    for name in FEATURE_COLUMNS:
        if "_risk_" in name:
            frame[name] = rng.random(n)
    frame["tx_during_night"] = rng.integers(0, 2, n).astype("float64")
    frame["tx_during_weekend"] = 0.0
    frame["customer_id_avg_amount_30day_window"] = 40.0
    frame["tx_amount"] = rng.uniform(1, 100, n)
    frame["score"] = rng.random(n)
    frame["customer_id"] = rng.integers(1, 101, n)
    frame["terminal_id"] = rng.integers(1, 201, n)
    frame["degraded"] = False
    return frame


def _summary(frame, rejected=None, **limits) -> QualitySummary:
    return summarize_quality(frame, DAY, get_settings(**limits), CUSTOMERS, TERMINALS, rejected)


def test_clean_rows_pass():
    summary = _summary(_clean(), rejected=0.0)
    assert summary.passed and summary.failures == []
    assert summary.rows == 100
    assert set(summary.null_share) == {*FEATURE_COLUMNS, "score"}
    assert sum(summary.out_of_range.values()) == 0
    assert summary.degraded_share == summary.unknown_entity_share == 0.0


def test_each_out_of_range_rule_counts_its_rows():
    frame = _clean()
    frame.loc[0, "tx_amount"] = -5.0
    frame.loc[1, "customer_id_nb_tx_1day_window"] = -1.0
    frame.loc[2, "customer_id_nb_tx_7day_window"] = 2.5
    frame.loc[3, "terminal_id_risk_7day_window"] = 1.5
    frame.loc[4, "tx_during_night"] = 2.0
    frame.loc[5, "score"] = -0.1
    summary = _summary(frame)
    assert {k: v for k, v in summary.out_of_range.items() if v} == {
        "tx_amount": 1,
        "customer_id_nb_tx_1day_window": 1,
        "customer_id_nb_tx_7day_window": 1,
        "terminal_id_risk_7day_window": 1,
        "tx_during_night": 1,
        "score": 1,
    }
    # 1 % of the rows per column is over the 0.1 % limit.
    assert len(summary.failures) == 6
    assert any(
        f.startswith("terminal_id_risk_7day_window: 1 values out of range")
        for f in summary.failures
    )


def test_nulls_degraded_and_unknown_entities_are_shares_of_the_rows():
    frame = _clean()
    frame.loc[:4, "score"] = np.nan
    frame.loc[:9, "degraded"] = True
    frame.loc[:1, "customer_id"] = 9_999
    frame.loc[2, "terminal_id"] = 9_999
    summary = _summary(frame)
    assert summary.null_share["score"] == pytest.approx(0.05)
    assert summary.degraded_share == pytest.approx(0.10)
    assert summary.unknown_entity_share == pytest.approx(0.03)
    assert [f.split(":")[0] for f in summary.failures] == [
        "score",
        "degraded answers",
        "unknown entities",
    ]


def test_amounts_far_above_the_cards_mean_are_implausible():
    frame = _clean()
    frame.loc[:9, "tx_amount"] = 40.0 * 100  # amounts in cents
    frame.loc[10, "customer_id_avg_amount_30day_window"] = 0.0  # no history: not judged
    frame.loc[10, "tx_amount"] = 1e5
    summary = _summary(frame)
    assert summary.implausible_amount_share == pytest.approx(10 / 99)
    assert summary.failures == ["tx_amount above 25x the card's 30-day mean: 10.10% (limit 5.00%)"]


def test_quarantined_source_rows_fail_only_once_ingested():
    assert _summary(_clean(), rejected=None).passed
    summary = _summary(_clean(), rejected=0.2)
    assert summary.failures == [
        "source transactions quarantined at ingestion: 20.00% (limit 1.00%)"
    ]
    assert _summary(_clean(), rejected=0.2, quality_max_rejected_share=0.5).passed


def test_the_summary_round_trips_through_json_values():
    summary = _summary(_clean(), rejected=0.2)
    assert QualitySummary.from_dict(summary.to_dict()) == summary
