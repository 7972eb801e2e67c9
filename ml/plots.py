"""Evaluation figures logged to MLflow: ROC, precision-recall, reliability, feature importance.

Figures are built with matplotlib's object API (no pyplot global state, no display needed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.metrics import reliability


def roc_figure(labels: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    """ROC curves of several scorers on the same labels."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    ax.legend(loc="lower right")
    return fig


def pr_figure(labels: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    """Precision-recall curves of several scorers on the same labels."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, scores in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax.plot(recall, precision, label=name)
    ax.axhline(float(np.mean(labels)), linestyle=":", color="grey", label="fraud rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test window)")
    ax.legend(loc="upper right")
    return fig


def reliability_figure(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> Figure:
    """Observed fraud rate against mean predicted probability per score bin."""
    table = reliability(labels, scores, bins)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    ax.plot(table["mean_score"], table["fraud_rate"], marker="o", label="model")
    for _, row in table.iterrows():
        ax.annotate(f"{int(row['rows'])}", (row["mean_score"], row["fraud_rate"]), fontsize=7)
    ax.set(xlabel="mean predicted probability", ylabel="observed fraud rate", title="Reliability")
    ax.legend(loc="upper left")
    return fig


def importance_figure(importance: pd.Series) -> Figure:
    """Horizontal bars of permutation importance (drop in average precision)."""
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ordered = importance.sort_values()
    ax.barh(ordered.index, ordered.to_numpy())
    ax.set(xlabel="drop in average precision when shuffled", title="Feature importance")
    fig.tight_layout()
    return fig
