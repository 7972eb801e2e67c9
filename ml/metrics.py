"""Evaluation metrics (docs/training.md), on a test frame and its scores."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from fraudops.contracts import AMOUNT_FRAUD_THRESHOLD

# Decision threshold of the alert rule for slice recall: a calibrated probability above 1/2.
THRESHOLD = 0.5
AMOUNT_BANDS = [0.0, 50.0, 100.0, AMOUNT_FRAUD_THRESHOLD, np.inf]


def card_precision_at_k(frame: pd.DataFrame, scores: np.ndarray, k: int = 100) -> float:
    """Mean over test days of the share of truly compromised cards among the day's top-k cards.

    Each card (customer) is scored by its highest transaction score of the day; cards detected
    on an earlier day (in that day's top k and truly compromised) are excluded; the share is
    always over k, as an investigation team checks k cards a day.
    """
    data = pd.DataFrame(
        {
            "day": frame["tx_date"].to_numpy(),
            "card": frame["customer_id"].to_numpy(),
            "fraud": frame["is_fraud"].to_numpy(),
            "score": np.asarray(scores),
        }
    )
    detected: set[int] = set()
    precisions = []
    for _, day in data.groupby("day", sort=True):
        cards = day.groupby("card", as_index=False).agg(
            score=("score", "max"), fraud=("fraud", "max")
        )
        cards = cards[~cards["card"].isin(list(detected))]
        # Ties broken by card id so the figure does not depend on row order.
        top = cards.sort_values(["score", "card"], ascending=[False, True]).head(k)
        hits = top.loc[top["fraud"] == 1, "card"]
        precisions.append(len(hits) / k)
        detected.update(int(card) for card in hits)
    return float(np.mean(precisions)) if precisions else float("nan")


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per equal-width score bin: rows, mean score and observed fraud rate."""
    scores = np.asarray(scores, dtype="float64")
    index = np.minimum((scores * bins).astype(int), bins - 1)
    table = pd.DataFrame({"bin": index, "score": scores, "label": np.asarray(labels)})
    grouped = table.groupby("bin").agg(
        rows=("label", "size"), mean_score=("score", "mean"), fraud_rate=("label", "mean")
    )
    return grouped.reset_index()


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean gap between mean score and fraud rate over equal-width bins."""
    table = reliability(labels, scores, bins)
    gaps = (table["mean_score"] - table["fraud_rate"]).abs()
    return float((gaps * table["rows"]).sum() / table["rows"].sum())


def slice_recall(
    frame: pd.DataFrame, scores: np.ndarray, threshold: float = THRESHOLD
) -> dict[str, float]:
    """Recall at ``threshold`` per fraud scenario, night/day, weekend/weekday and amount band."""
    flagged = np.asarray(scores) >= threshold
    frauds = frame["is_fraud"].to_numpy() == 1
    bands = pd.cut(frame["tx_amount"], AMOUNT_BANDS, right=False, labels=False).to_numpy()
    slices = {
        **{f"scenario_{s}": frame["fraud_scenario"].to_numpy() == s for s in (1, 2, 3, 4)},
        "night": frame["tx_during_night"].to_numpy() == 1,
        "day": frame["tx_during_night"].to_numpy() == 0,
        "weekend": frame["tx_during_weekend"].to_numpy() == 1,
        "weekday": frame["tx_during_weekend"].to_numpy() == 0,
        **{
            f"amount_{int(lo)}_{'inf' if np.isinf(hi) else int(hi)}": bands == i
            for i, (lo, hi) in enumerate(itertools.pairwise(AMOUNT_BANDS))
        },
    }
    recalls = {}
    for name, mask in slices.items():
        positives = frauds & mask
        if positives.any():
            recalls[f"recall_{name}"] = float(flagged[positives].mean())
    return recalls


def classification_metrics(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """ROC AUC, average precision, card precision@100, Brier, ECE and slice recalls."""
    labels = frame["is_fraud"].to_numpy()
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(labels, scores)),
        "card_precision_at_100": card_precision_at_k(frame, scores, 100),
        "brier": float(brier_score_loss(labels, scores)),
        "ece": expected_calibration_error(labels, scores),
        "fraud_rate": float(labels.mean()),
        "rows": float(len(labels)),
        **slice_recall(frame, scores),
    }


def single_row_latency(
    predict: Callable[[pd.DataFrame], object], rows: pd.DataFrame, n: int = 300
) -> dict[str, float]:
    """p50 and p99 wall time in milliseconds of ``predict`` on one-row frames."""
    samples = [rows.iloc[[i % len(rows)]] for i in range(n)]
    predict(samples[0])  # warm-up: first call pays lazy initialisation
    times = []
    for row in samples:
        start = time.perf_counter()
        predict(row)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p99_ms": float(np.percentile(times, 99)),
    }


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    features: list[str],
    seed: int,
    max_rows: int = 20_000,
) -> pd.Series:
    """Drop in average precision when each feature is shuffled (model-agnostic importance)."""
    rng = np.random.default_rng(seed)
    if len(frame) > max_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
    labels = frame["is_fraud"].to_numpy()
    base = average_precision_score(labels, predict(frame))
    drops = {}
    for name in features:
        shuffled = frame.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        drops[name] = base - average_precision_score(labels, predict(shuffled))
    return pd.Series(drops).sort_values(ascending=False)
