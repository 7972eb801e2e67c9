"""The retraining steps as plain functions: train candidates, evaluate them, register them.

Each step reads the training set at the Delta version the candidates were trained on, so the
whole chain works on one consistent snapshot; the Dagster assets only call these functions.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import Settings
from ml import plots, tracking
from ml.baseline import amount_rule_scores
from ml.cost import Cost, CostMeter
from ml.dataset import TrainingData, load_training_set
from ml.metrics import (
    classification_metrics,
    permutation_importance,
    reliability,
    single_row_latency,
)
from ml.model import Kind, ScoringModel, folder_size, model_input
from ml.split import TimeSplit, protocol_splits, train_test
from ml.train import (
    MLP_PARAMS,
    XGB_GRID,
    Progress,
    search_xgboost,
    train_mlp,
    train_xgboost,
)

KEY_METRICS = ("average_precision", "roc_auc", "card_precision_at_100", "brier", "ece")


@dataclass(frozen=True)
class Splits:
    """The frames of the protocol: validation train/test (for the search) and train/test."""

    validation: TimeSplit
    test: TimeSplit
    validation_train: pd.DataFrame
    validation_test: pd.DataFrame
    train: pd.DataFrame
    test_frame: pd.DataFrame


@dataclass(frozen=True)
class Candidate:
    """A trained candidate logged to MLflow."""

    kind: Kind
    run_id: str
    model_uri: str
    validation_ap: float
    train_seconds: float
    data_version: int
    # What the whole candidate step cost (load, search, fit, logging), also on its run.
    cost: Cost | None = None


@dataclass(frozen=True)
class Evaluation:
    """Test-window figures of every candidate and of the baseline; the selected candidate."""

    test_window: TimeSplit
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, float]
    selected: Kind
    data_version: int
    # What evaluating every candidate cost (scoring, latency, importance, plots).
    cost: Cost | None = None


def _say(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def make_splits(frame: pd.DataFrame, settings: Settings) -> Splits:
    """Cut a training frame into the validation and test protocol splits."""
    validation, test = protocol_splits(frame, settings)
    rules = (settings.label_delay_days, settings.known_card_memory_days)
    validation_train, validation_test = train_test(frame, validation, *rules)
    train, test_frame = train_test(frame, test, *rules)
    for name, part in {
        "training": train,
        "test": test_frame,
        "validation": validation_test,
    }.items():
        if part["is_fraud"].nunique() < 2:
            raise ValueError(
                f"the {name} window has a single class; ingest more days or widen the windows"
            )
    return Splits(validation, test, validation_train, validation_test, train, test_frame)


def _final_xgboost_fit(
    train: pd.DataFrame, params: Mapping[str, object], seed: int, settings: Settings | None
) -> ScoringModel:
    """The XGBoost candidate's fit on the training window, where the settings say it runs."""
    if settings is None or settings.training_engine == "local":
        return train_xgboost(train, params, seed)
    # Imported here: dask starts nothing at import, but it is only needed on this path.
    from ml.distributed import dask_client, train_xgboost_dask

    with dask_client(settings) as client:
        return train_xgboost_dask(train, params, seed, client)


def _fit(
    kind: Kind,
    splits: Splits,
    seed: int,
    xgb_space: Mapping[str, Sequence[object]],
    mlp_params: Mapping[str, object],
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> tuple[ScoringModel, float, float, dict[str, object]]:
    """Model on the training window, its validation AP, its training time and its params."""
    if kind == "xgboost":
        _say(progress, f"xgboost: grid search on {len(splits.validation_train):,} rows")
        params, trials = search_xgboost(
            splits.validation_train, splits.validation_test, seed, xgb_space, progress
        )
        mlflow.log_table(pd.DataFrame(trials), "search/xgboost_trials.json")
        validation_ap = max(t["validation_ap"] for t in trials)
        _say(progress, f"xgboost: final fit on {len(splits.train):,} training rows")
        started = time.perf_counter()
        model = _final_xgboost_fit(splits.train, params, seed, settings)
    else:
        params = dict(mlp_params)
        _say(progress, f"torch: validation fit on {len(splits.validation_train):,} rows")
        scores = train_mlp(splits.validation_train, params, seed, progress).predict_proba(
            splits.validation_test
        )
        validation_ap = classification_metrics(splits.validation_test, scores)["average_precision"]
        _say(progress, f"torch: final fit on {len(splits.train):,} training rows")
        started = time.perf_counter()
        model = train_mlp(splits.train, params, seed, progress)
    return model, validation_ap, time.perf_counter() - started, params


def train_candidate(
    kind: Kind,
    settings: Settings,
    data: TrainingData | None = None,
    xgb_space: Mapping[str, Sequence[object]] = XGB_GRID,
    mlp_params: Mapping[str, object] = MLP_PARAMS,
    progress: Progress | None = None,
) -> Candidate:
    """Train one candidate family on the newest training window and log it as an MLflow run.

    The run records the step's cost (``cost_*`` metrics: wall, CPU, peak memory, rows).
    """
    meter = CostMeter()
    with meter:
        candidate = _train_candidate(kind, settings, data, xgb_space, mlp_params, progress, meter)
    tracking.log_cost(candidate.run_id, meter.cost)
    _say(progress, f"{kind}: done, {meter.cost.summary()}")
    return dataclasses.replace(candidate, cost=meter.cost)


def _train_candidate(
    kind: Kind,
    settings: Settings,
    data: TrainingData | None,
    xgb_space: Mapping[str, Sequence[object]],
    mlp_params: Mapping[str, object],
    progress: Progress | None,
    meter: CostMeter,
) -> Candidate:
    tracking.configure(settings)
    if data is None:
        _say(progress, f"{kind}: loading the training set")
        data = load_training_set(settings)
    splits = make_splits(data.frame, settings)
    meter.rows = len(data.frame)
    seed = settings.train_seed
    with mlflow.start_run(run_name=f"{kind}-candidate", tags=tracking.run_tags(seed)) as run:
        mlflow.set_tag("candidate", kind)
        tracking.log_dataset(data, splits.train, "training")
        tracking.log_dataset(data, splits.validation_test, "validation")
        model, validation_ap, seconds, params = _fit(
            kind, splits, seed, xgb_space, mlp_params, progress, settings
        )
        _say(progress, f"{kind}: validation AP {validation_ap:.4f}; logging the model to MLflow")
        mlflow.log_params(
            {
                "model_kind": kind,
                "training_engine": settings.training_engine if kind == "xgboost" else "local",
                "seed": seed,
                "train_rows": len(splits.train),
                "data_version": data.version,
                "data_digest": data.digest,
                "label_delay_days": settings.label_delay_days,
                "known_card_memory_days": settings.known_card_memory_days,
                **splits.test.as_params("window_"),
                **splits.validation.as_params("validation_window_"),
                **{f"model_{k}": v for k, v in params.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            model_uri = tracking.log_scoring_model(model, splits.train, Path(tmp))
            size = folder_size(Path(tmp))
        mlflow.log_metrics(
            {"validation_ap": validation_ap, "train_seconds": seconds, "model_size_bytes": size}
        )
    return Candidate(kind, run.info.run_id, model_uri, validation_ap, seconds, data.version)


def _score(model: PyFuncModel, test: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    rows = model_input(test)
    scores = np.asarray(model.predict(rows))
    metrics = {**classification_metrics(test, scores), **single_row_latency(model.predict, rows)}
    return scores, metrics


def evaluate_model(model_uri: str, test: pd.DataFrame) -> dict[str, float]:
    """Test-window metrics and single-row latency of a logged pyfunc model."""
    return _score(mlflow.pyfunc.load_model(model_uri), test)[1]


def _log_evaluation(
    candidate: Candidate,
    model: PyFuncModel,
    test: pd.DataFrame,
    scores: np.ndarray,
    metrics: dict[str, float],
    baseline: dict[str, float],
    seed: int,
) -> None:
    labels = test["is_fraud"].to_numpy()
    curves = {candidate.kind: scores, "amount rule": amount_rule_scores(test)}
    importance = permutation_importance(
        lambda rows: model.predict(model_input(rows)), test, FEATURE_COLUMNS, seed
    )
    with mlflow.start_run(run_id=candidate.run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({f"baseline_{k}": v for k, v in baseline.items() if k in KEY_METRICS})
        mlflow.log_figure(plots.roc_figure(labels, curves), "plots/roc.png")
        mlflow.log_figure(plots.pr_figure(labels, curves), "plots/precision_recall.png")
        mlflow.log_figure(plots.reliability_figure(labels, scores), "plots/reliability.png")
        mlflow.log_figure(plots.importance_figure(importance), "plots/feature_importance.png")
        mlflow.log_table(reliability(labels, scores), "evaluation/reliability.json")
        mlflow.log_dict(importance.to_dict(), "evaluation/feature_importance.json")


def evaluate_candidates(
    candidates: Sequence[Candidate],
    settings: Settings,
    data: TrainingData | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Evaluate every candidate and the baseline once on the test window; log figures and plots.

    The candidate to register as challenger is chosen on validation AP, not on the test window.
    """
    meter = CostMeter()
    with meter:
        evaluation = _evaluate_candidates(candidates, settings, data, progress, meter)
    _say(progress, f"evaluation: done, {meter.cost.summary()}")
    return dataclasses.replace(evaluation, cost=meter.cost)


def _evaluate_candidates(
    candidates: Sequence[Candidate],
    settings: Settings,
    data: TrainingData | None,
    progress: Progress | None,
    meter: CostMeter,
) -> Evaluation:
    tracking.configure(settings)
    version = candidates[0].data_version
    if any(c.data_version != version for c in candidates):
        raise ValueError(
            f"candidates were trained on different training-set versions "
            f"{sorted({c.data_version for c in candidates})}; rerun the retraining job"
        )
    data = data or load_training_set(settings, version=version)
    splits = make_splits(data.frame, settings)
    test = splits.test_frame
    meter.rows = len(test)
    baseline = classification_metrics(test, amount_rule_scores(test))
    metrics = {}
    for i, candidate in enumerate(candidates, 1):
        kind = candidate.kind
        _say(
            progress,
            f"evaluation {i}/{len(candidates)}: {kind} on {len(test):,} test rows "
            "(metrics, single-row latency)",
        )
        model = mlflow.pyfunc.load_model(candidate.model_uri)
        scores, metrics[kind] = _score(model, test)
        _say(
            progress,
            f"evaluation {i}/{len(candidates)}: {kind} test AP "
            f"{metrics[kind]['average_precision']:.4f}; permutation importance and plots",
        )
        _log_evaluation(
            candidate, model, test, scores, metrics[kind], baseline, settings.train_seed
        )
    selected = max(candidates, key=lambda c: c.validation_ap).kind
    return Evaluation(splits.test, metrics, baseline, selected, version)
