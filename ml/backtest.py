"""The gate's backtest: the challenger replayed on logged traffic whose labels are known.

The prediction log holds every transaction the service scored, with the 15 model inputs it
saw (online features, degraded fallbacks included) and the champion's answer. Once the fraud
reports of those days are in (the label delay), the newest ``backtest_days`` labelled days are
replayed through the challenger and compared with what the champion answered on the same
transactions: average precision, card precision@100 and the rest of
:func:`ml.metrics.classification_metrics`, per day and overall, and how many decisions
(approve / review / decline) would change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from mlflow.tracking import MlflowClient
from sklearn.metrics import average_precision_score

from fraudops.catalog import PREDICTION_LOG, RAW_FRAUD_REPORTS
from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import Settings
from lakehouse import delta
from ml.metrics import card_precision_at_k, classification_metrics
from ml.model import model_input

# The figures compared (and recorded) for both models.
FIGURES = ("average_precision", "card_precision_at_100", "roc_auc", "brier")
LOG_COLUMNS = [
    "scored_at",
    "transaction_id",
    "customer_id",
    "tx_datetime",
    *FEATURE_COLUMNS,
    "degraded",
    "score",
    "served_by",
    "model_version",
    "champion_version",
    "champion_score",
]


@dataclass(frozen=True)
class LabelledTraffic:
    """Logged transactions with known labels (empty with ``reason`` when there are none)."""

    frame: pd.DataFrame
    reason: str = ""
    labels_known_until: dt.datetime | None = None


@dataclass(frozen=True)
class Backtest:
    """Challenger vs the champion's logged answers on the same labelled transactions."""

    first_day: dt.date
    last_day: dt.date
    rows: int
    frauds: int
    degraded_rows: int
    challenger_version: str
    champion_versions: list[str]
    challenger: dict[str, float]
    champion: dict[str, float]
    decision_changes: int
    changes: dict[str, int] = field(default_factory=dict)
    per_day: list[dict[str, object]] = field(default_factory=list)

    @property
    def ap_gain(self) -> float:
        """Challenger AP minus the champion's on the replayed traffic."""
        return self.challenger["average_precision"] - self.champion["average_precision"]

    def summary(self) -> str:
        """One line for the gate's record."""
        return (
            f"backtest on {self.rows:,} logged transactions {self.first_day}..{self.last_day} "
            f"({self.frauds:,} frauds): AP {self.challenger['average_precision']:.4f} vs "
            f"champion {self.champion['average_precision']:.4f} ({self.ap_gain:+.4f}), card "
            f"precision@100 {self.challenger['card_precision_at_100']:.4f} vs "
            f"{self.champion['card_precision_at_100']:.4f}, {self.decision_changes:,} "
            f"decisions change ({self.decision_changes / self.rows:.2%})"
        )


def decisions(scores: np.ndarray, settings: Settings) -> np.ndarray:
    """The service's decision rule (serving/scoring.py ``decide``) at the settings' thresholds."""
    review, decline = settings.serving_review_threshold, settings.serving_decline_threshold
    return np.where(scores >= decline, "decline", np.where(scores >= review, "review", "approve"))


def _fraud_reports(settings: Settings) -> pd.DataFrame | None:
    uri = RAW_FRAUD_REPORTS.uri(settings)
    if not delta.table_exists(uri, settings.storage_options):
        return None
    columns = ["transaction_id", "fraud_scenario", "reported_at"]
    return delta.read_table(uri, columns, storage_options=settings.storage_options).to_pandas()


def _labelled_days(stamps: pa.ChunkedArray, cutoff: dt.datetime, count: int) -> list[dt.date]:
    """The newest ``count`` days holding logged transactions at or before ``cutoff``."""
    kept = stamps.filter(pc.less_equal(stamps, pa.scalar(cutoff, type=stamps.type)))
    return sorted(pc.unique(kept.cast(pa.date32())).to_pylist())[-count:]


def load_labelled_traffic(settings: Settings) -> LabelledTraffic:
    """The newest ``backtest_days`` days of logged transactions whose label is known.

    A label is known once the fraud reports reach the transaction's time plus the label delay
    (the training set's rule); each transaction counts once (its latest log row).
    """
    uri = PREDICTION_LOG.uri(settings)
    table = delta.open_table(uri, settings.storage_options)
    if table is None:
        return LabelledTraffic(pd.DataFrame(), f"no logged traffic: no prediction log at {uri}")
    reports = _fraud_reports(settings)
    if reports is None or reports.empty:
        return LabelledTraffic(
            pd.DataFrame(), "no fraud report ingested yet, so no logged transaction is labelled"
        )
    known_until = pd.Timestamp(reports["reported_at"].max()).to_pydatetime()
    cutoff = known_until - dt.timedelta(days=settings.label_delay_days)
    dataset = table.to_pyarrow_dataset()
    # Two passes: the timestamps alone pick the days, then only their rows are read whole.
    stamps = dataset.to_table(columns=["tx_datetime"]).column("tx_datetime")
    days = _labelled_days(stamps, cutoff, settings.backtest_days)
    if not days:
        return LabelledTraffic(
            pd.DataFrame(),
            f"none of the {len(stamps):,} logged transactions has a known label yet "
            f"(labels are known up to {cutoff:%Y-%m-%d %H:%M})"
            if len(stamps)
            else "no logged traffic: the prediction log is empty",
            known_until,
        )
    moment = ds.field("tx_datetime")
    start = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    rows = (moment >= pa.scalar(start, type=stamps.type)) & (
        moment <= pa.scalar(cutoff, type=stamps.type)
    )
    frame = dataset.to_table(columns=LOG_COLUMNS, filter=rows).to_pandas()
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"], utc=True)
    frame["tx_date"] = frame["tx_datetime"].dt.date
    # A transaction scored twice (a client retry) counts once, with its latest answer.
    frame = frame.sort_values("scored_at").drop_duplicates("transaction_id", keep="last")
    # A row without the champion's answer cannot be compared.
    frame = frame[frame["champion_score"].notna()].copy()
    if frame.empty:
        return LabelledTraffic(
            frame, "no labelled logged transaction carries the champion's answer", known_until
        )
    scenario = reports.drop_duplicates("transaction_id").set_index("transaction_id")
    scenario = scenario["fraud_scenario"]
    frame["is_fraud"] = frame["transaction_id"].isin(scenario.index).astype("int8")
    frame["fraud_scenario"] = frame["transaction_id"].map(scenario).fillna(0).astype("int8")
    frame = frame.sort_values(["tx_datetime", "transaction_id"], ignore_index=True)
    return LabelledTraffic(frame, "", known_until)


def _per_day(frame: pd.DataFrame, challenger: np.ndarray) -> list[dict[str, object]]:
    """AP and card precision@100 of both models per day (AP only on days with a fraud)."""
    rows = []
    for day, index in sorted(frame.groupby("tx_date").indices.items()):
        part = frame.iloc[index]
        frauds = int(part["is_fraud"].sum())
        row: dict[str, object] = {"day": str(day), "rows": len(part), "frauds": frauds}
        for role, scores in (
            ("challenger", challenger[index]),
            ("champion", part["champion_score"]),
        ):
            scores = np.asarray(scores, dtype="float64")
            row[f"{role}_card_precision_at_100"] = card_precision_at_k(part, scores, 100)
            row[f"{role}_average_precision"] = (
                float(average_precision_score(part["is_fraud"], scores)) if frauds else None
            )
        rows.append(row)
    return rows


def backtest(
    traffic: pd.DataFrame,
    predict: Callable[[pd.DataFrame], np.ndarray],
    challenger_version: str,
    settings: Settings,
) -> Backtest:
    """Score ``traffic`` (from :func:`load_labelled_traffic`) with ``predict`` and compare."""
    if traffic.empty:
        raise ValueError("no labelled logged traffic to backtest on; see load_labelled_traffic")
    if traffic["is_fraud"].nunique() < 2:
        raise ValueError(
            f"the {len(traffic):,} labelled logged transactions hold a single class: "
            "the backtest needs frauds and genuine payments"
        )
    challenger = np.asarray(predict(model_input(traffic)), dtype="float64").reshape(-1)
    champion = traffic["champion_score"].to_numpy(dtype="float64")
    new, old = decisions(challenger, settings), decisions(champion, settings)
    changed = new != old
    pairs = pd.Series([f"{a}->{b}" for a, b in zip(old[changed], new[changed], strict=True)])
    return Backtest(
        first_day=min(traffic["tx_date"]),
        last_day=max(traffic["tx_date"]),
        rows=len(traffic),
        frauds=int(traffic["is_fraud"].sum()),
        degraded_rows=int(traffic["degraded"].fillna(False).sum()),
        challenger_version=str(challenger_version),
        champion_versions=sorted({str(v) for v in traffic["champion_version"].dropna()}),
        challenger=_figures(classification_metrics(traffic, challenger)),
        champion=_figures(classification_metrics(traffic, champion)),
        decision_changes=int(changed.sum()),
        changes={k: int(v) for k, v in pairs.value_counts().sort_index().items()},
        per_day=_per_day(traffic, challenger),
    )


def _figures(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in FIGURES}


def backtest_version(settings: Settings, version: str) -> Backtest | str:
    """Backtest a registered version of the settings' model; the reason when it cannot run."""
    traffic = load_labelled_traffic(settings)
    if traffic.frame.empty:
        return traffic.reason
    if traffic.frame["is_fraud"].nunique() < 2:
        return (
            f"the {len(traffic.frame):,} labelled logged transactions hold a single class, "
            "so AP is undefined"
        )
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    return backtest(traffic.frame, model.predict, version, settings)


def record(settings: Settings, run_id: str, result: Backtest | str) -> None:
    """Record the backtest (or why there is none) on the MLflow run ``run_id``."""
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    if isinstance(result, str):
        client.set_tag(run_id, "backtest", result)
        return
    metrics = {
        "backtest_rows": result.rows,
        "backtest_frauds": result.frauds,
        "backtest_degraded_rows": result.degraded_rows,
        "backtest_decision_changes": result.decision_changes,
        "backtest_decision_change_share": result.decision_changes / result.rows,
        **{f"backtest_challenger_{k}": v for k, v in result.challenger.items()},
        **{f"backtest_champion_{k}": v for k, v in result.champion.items()},
    }
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.set_tag(run_id, "backtest", result.summary())
    client.set_tag(run_id, "backtest_days", f"{result.first_day}..{result.last_day}")
    client.set_tag(run_id, "backtest_champion_versions", ",".join(result.champion_versions))
    client.log_dict(
        run_id,
        {"per_day": result.per_day, "decision_changes": result.changes},
        "backtest/backtest.json",
    )
