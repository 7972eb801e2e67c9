"""Profiles: chunked on worker processes and merged equal one profile of the whole frame."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from monitoring.profiles import Profile, profile_frame

# KLL's rank error at whylogs' k = 1024 is about 0.3 %; the margin leaves room for ties.
RANK_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 60_000
    amounts = rng.gamma(2.0, 30.0, n)
    return pd.DataFrame(
        {
            "tx_amount": amounts,
            "tx_during_night": (rng.random(n) < 0.2).astype("float64"),
            "customer_id_nb_tx_7day_window": rng.poisson(8, n),
            "score": np.where(rng.random(n) < 0.01, np.nan, rng.random(n)),
            "decision": rng.choice(["approve", "review", "decline"], n, p=[0.9, 0.07, 0.03]),
            "degraded": rng.random(n) < 0.05,
        }
    )


@pytest.fixture(scope="module")
def whole(frame) -> Profile:
    return profile_frame(frame, chunk_rows=len(frame))


@pytest.fixture(scope="module")
def chunked(frame) -> Profile:
    """Seven chunks on two spawned worker processes."""
    return profile_frame(frame, chunk_rows=9_000, workers=2)


def test_merged_chunks_count_exactly_like_one_profile(frame, whole, chunked):
    assert chunked.columns == whole.columns == sorted(frame.columns)
    assert chunked.rows == whole.rows == len(frame)
    for name in frame.columns:
        assert chunked.count(name) == whole.count(name) == len(frame)
        assert chunked.null_count(name) == whole.null_count(name) == int(frame[name].isna().sum())


def test_merged_chunks_agree_on_moments_and_quantiles(frame, whole, chunked):
    fractions = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    for name in ["tx_amount", "customer_id_nb_tx_7day_window", "score"]:
        values = np.sort(frame[name].dropna().to_numpy(dtype="float64"))
        assert chunked.mean(name) == pytest.approx(values.mean(), rel=1e-9)
        assert chunked.min(name) == values[0] and chunked.max(name) == values[-1]
        for profile in (whole, chunked):
            for fraction, quantile in zip(
                fractions, profile.quantiles(name, fractions), strict=True
            ):
                # The ranks a value spans (many, for a repeated integer) must cover the fraction.
                low = np.searchsorted(values, quantile, side="left") / len(values)
                high = np.searchsorted(values, quantile, side="right") / len(values)
                assert low - RANK_TOLERANCE <= fraction <= high + RANK_TOLERANCE, (name, fraction)


def test_booleans_are_profiled_as_zero_one(chunked, frame):
    assert chunked.mean("degraded") == pytest.approx(frame["degraded"].mean())


def test_histogram_shares_sum_to_one(chunked):
    shares = chunked.histogram("score", np.linspace(0, 1, 11))
    assert len(shares) == 10
    assert sum(shares) == pytest.approx(1.0)
    assert all(0.07 < s < 0.13 for s in shares)


def test_bytes_and_files_round_trip(chunked, tmp_path):
    again = Profile.from_bytes(chunked.to_bytes())
    assert again.rows == chunked.rows
    assert again.quantiles("tx_amount", [0.5]) == chunked.quantiles("tx_amount", [0.5])
    path = chunked.write(tmp_path / "deep" / "p.bin")
    assert Profile.read(path).null_count("score") == chunked.null_count("score")


def test_merging_two_halves_adds_their_rows(frame):
    first = profile_frame(frame.iloc[:20_000])
    second = profile_frame(frame.iloc[20_000:])
    merged = first.merge(second)
    assert merged.rows == len(frame)
    assert merged.null_count("score") == int(frame["score"].isna().sum())


def test_an_empty_frame_is_refused(frame):
    with pytest.raises(ValueError, match="empty"):
        profile_frame(frame.iloc[:0])


def test_an_unknown_column_is_named_in_the_error(chunked):
    with pytest.raises(KeyError, match="nope"):
        chunked.count("nope")


def test_whylogs_usage_reporting_is_off_without_any_variable_set():
    env = {k: v for k, v in os.environ.items() if k != "WHYLOGS_NO_ANALYTICS"}
    code = (
        "from monitoring.profiles import import_whylogs; import_whylogs();"
        "from whylogs.api import usage_stats; print(usage_stats._TELEMETRY_DISABLED)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
