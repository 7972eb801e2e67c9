"""Performance on delayed labels: a day's prediction log joined with the fraud reports.

A fraud is reported ``label_delay_days`` after the transaction, so the labels of day D are
known once the raw fraud-report feed holds the report day D + delay; every logged transaction
of D without a report is then a genuine one. Figures per day:

- on the rows the champion answered (``served_by = champion``): average precision, card
  precision@100 (ml/metrics.py, the project's definition), Brier score, precision and recall
  of the ``decline`` and of the ``review`` decisions, recall per fraud scenario (a fraud counts
  as caught when it was not approved);
- the served version's own test figures from its MLflow evaluation run, for comparison;
- the challenger's figures on the rows it scored (canary or shadow traffic).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss

from fraudops.catalog import RAW_FRAUD_REPORTS
from fraudops.contracts import CHAMPION
from fraudops.settings import Settings
from lakehouse.delta import partition_row_counts, read_table
from ml import tracking
from ml.metrics import card_precision_at_k
from monitoring import store
from monitoring.production import NoTrafficError, read_day

SCENARIOS = (1, 2, 3, 4)


class LabelsNotKnownError(ValueError):
    """The fraud reports of the day are not all in the lakehouse yet."""


@dataclass(frozen=True)
class DayPerformance:
    """The served model's figures on one day once its labels are known."""

    day: dt.date
    rows: int
    frauds: int
    model_version: str
    average_precision: float
    card_precision_at_100: float
    brier: float
    decline_precision: float
    decline_recall: float
    review_precision: float
    review_recall: float
    scenario_recall: dict[str, float]
    scenario_frauds: dict[str, int]
    champion_test: dict[str, float]
    challenger: dict[str, float] | None = None
    challenger_version: str | None = None

    @property
    def ap_drop(self) -> float:
        """The served version's test AP minus the day's AP (NaN without a test AP)."""
        return self.champion_test.get("average_precision", float("nan")) - self.average_precision

    def below_floors(self, settings: Settings) -> list[str]:
        """Why the day's figures call for retraining (empty: they do not).

        Only days (and scenarios) with at least ``performance_min_frauds`` frauds are judged:
        a handful of frauds makes the average precision a coin toss.
        """
        if self.frauds < settings.performance_min_frauds:
            return []
        reasons = []
        if self.ap_drop > settings.performance_ap_margin:
            test_ap = self.champion_test["average_precision"]
            reasons.append(
                f"average precision {self.average_precision:.3f} is {self.ap_drop:.3f} below "
                f"the test AP {test_ap:.3f} of version {self.model_version} "
                f"(margin {settings.performance_ap_margin:.3f})"
            )
        if self.card_precision_at_100 < settings.performance_min_card_precision:
            reasons.append(
                f"card precision@100 {self.card_precision_at_100:.3f} is below the floor "
                f"{settings.performance_min_card_precision:.3f}"
            )
        reasons += [
            f"{scenario} recall {recall:.3f} is below the floor "
            f"{settings.performance_min_scenario_recall:.3f} on "
            f"{self.scenario_frauds[scenario]} frauds"
            for scenario, recall in sorted(self.scenario_recall.items())
            if self.scenario_frauds.get(scenario, 0) >= settings.performance_min_frauds
            and recall < settings.performance_min_scenario_recall
        ]
        return reasons

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the stored figures)."""
        return {**asdict(self), "day": self.day.isoformat(), "ap_drop": self.ap_drop}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DayPerformance:
        """The figures of :meth:`to_dict`."""
        values = {k: v for k, v in data.items() if k != "ap_drop"}
        return cls(**{**values, "day": dt.date.fromisoformat(str(data["day"]))})


def newest_report_day(settings: Settings) -> dt.date | None:
    """The newest report day the raw fraud-report feed holds (None: no report yet)."""
    days = partition_row_counts(
        RAW_FRAUD_REPORTS.uri(settings), "report_date", settings.storage_options
    )
    return max(days) if days else None


def labels_known(settings: Settings, day: dt.date) -> bool:
    """Whether every fraud of ``day`` has had time to be reported and ingested."""
    newest = newest_report_day(settings)
    return newest is not None and newest >= day + dt.timedelta(days=settings.label_delay_days)


def _reports(settings: Settings) -> pd.Series:
    """Fraud scenario by transaction id, from the raw fraud reports."""
    table = read_table(
        RAW_FRAUD_REPORTS.uri(settings),
        columns=["transaction_id", "fraud_scenario"],
        storage_options=settings.storage_options,
    ).to_pandas()
    return table.drop_duplicates("transaction_id").set_index("transaction_id")["fraud_scenario"]


def label(frame: pd.DataFrame, scenarios: pd.Series) -> pd.DataFrame:
    """``frame`` with ``is_fraud``, ``fraud_scenario`` and ``tx_date`` from the reports."""
    scenario = frame["transaction_id"].map(scenarios).fillna(0).astype("int64")
    tx_date = pd.to_datetime(frame["tx_datetime"], utc=True).dt.date
    return frame.assign(
        fraud_scenario=scenario, is_fraud=(scenario > 0).astype("int64"), tx_date=tx_date
    )


def _precision_recall(flagged: np.ndarray, frauds: np.ndarray) -> tuple[float, float]:
    hits = float((flagged & frauds).sum())
    precision = hits / flagged.sum() if flagged.any() else float("nan")
    recall = hits / frauds.sum() if frauds.any() else float("nan")
    return float(precision), float(recall)


def ranking_figures(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """Average precision, card precision@100 and Brier score of ``scores`` on ``frame``."""
    labels = frame["is_fraud"].to_numpy()
    both = 0 < labels.sum() < len(labels)
    return {
        "average_precision": float(average_precision_score(labels, scores)) if both else np.nan,
        "card_precision_at_100": card_precision_at_k(frame, scores, 100),
        "brier": float(brier_score_loss(labels, scores, pos_label=1)) if len(labels) else np.nan,
    }


def day_figures(frame: pd.DataFrame) -> dict[str, object]:
    """The served figures of labelled log rows (``score``, ``decision``, labels)."""
    frauds = frame["is_fraud"].to_numpy() == 1
    decision = frame["decision"].to_numpy()
    decline = _precision_recall(decision == "decline", frauds)
    review = _precision_recall(decision == "review", frauds)
    caught = decision != "approve"
    scenario = frame["fraud_scenario"].to_numpy()
    return {
        **ranking_figures(frame, frame["score"].to_numpy(dtype="float64")),
        "rows": len(frame),
        "frauds": int(frauds.sum()),
        "decline_precision": decline[0],
        "decline_recall": decline[1],
        "review_precision": review[0],
        "review_recall": review[1],
        "scenario_recall": {
            f"scenario_{s}": float(caught[scenario == s].mean())
            for s in SCENARIOS
            if (scenario == s).any()
        },
        "scenario_frauds": {
            f"scenario_{s}": int((scenario == s).sum()) for s in SCENARIOS if (scenario == s).any()
        },
    }


def version_test_figures(settings: Settings, version: str) -> dict[str, float]:
    """The test-window AP and card precision@100 MLflow recorded for ``version``."""
    client = tracking.configure(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    metrics = client.get_run(run_id).data.metrics
    return {
        name: float(metrics[f"test_{name}"])
        for name in ("average_precision", "card_precision_at_100")
        if f"test_{name}" in metrics
    }


def _challenger(frame: pd.DataFrame) -> tuple[dict[str, float] | None, str | None]:
    scored = frame[frame["challenger_score"].notna()]
    if scored.empty:
        return None, None
    figures = ranking_figures(scored, scored["challenger_score"].to_numpy(dtype="float64"))
    figures |= {"rows": float(len(scored)), "frauds": float(scored["is_fraud"].sum())}
    return figures, str(scored["challenger_version"].mode().iloc[0])


def compute_performance(settings: Settings, day: dt.date) -> DayPerformance:
    """The figures of ``day``; stored as JSON. LabelsNotKnownError before its reports are in."""
    if not labels_known(settings, day):
        raise LabelsNotKnownError(
            f"the labels of {day.isoformat()} are not known yet: the fraud reports feed must "
            f"reach {day + dt.timedelta(days=settings.label_delay_days)} "
            f"(newest report day: {newest_report_day(settings)})"
        )
    frame = read_day(settings, day)
    if frame.empty:
        raise NoTrafficError(f"the prediction log holds no transaction of {day.isoformat()}")
    frame = label(frame, _reports(settings))
    served = frame[frame["served_by"] == CHAMPION]
    if served.empty:
        raise NoTrafficError(f"no row of {day.isoformat()} was answered by the champion")
    version = str(served["model_version"].mode().iloc[0])
    challenger, challenger_version = _challenger(frame)
    performance = DayPerformance(
        day=day,
        model_version=version,
        champion_test=version_test_figures(settings, version),
        challenger=challenger,
        challenger_version=challenger_version,
        **day_figures(served),
    )
    store.write_json(store.performance_file(settings, day), performance.to_dict())
    return performance


def load_performance(settings: Settings, day: dt.date) -> DayPerformance | None:
    """The stored figures of ``day``, or None."""
    path = store.performance_file(settings, day)
    return DayPerformance.from_dict(store.read_json(path)) if path.exists() else None


def newest_performance(settings: Settings) -> DayPerformance | None:
    """The figures of the newest day computed (reads one JSON file), or None."""
    days = store.dated(settings.monitoring_path / "performance", "*.json")
    return DayPerformance.from_dict(store.read_json(days[-1][1])) if days else None


def first_bad_day_in(settings: Settings, start: dt.date, end: dt.date) -> dt.date | None:
    """The first day of ``start..end`` whose stored figures are under the floors, or None."""
    day = start
    while day <= end:
        perf = load_performance(settings, day)
        if perf is not None and perf.below_floors(settings):
            return day
        day += dt.timedelta(days=1)
    return None
