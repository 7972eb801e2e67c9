"""The fallback model: fraud scores from the request-time features alone, for degraded answers.

When the online store is down, or has no row for an entity, the service fills the entity
features with the training set's fill values (counts, averages and risks 0). The champion
never saw a whole row of those on real traffic, and scores them far from its usual answers.
The fallback model is trained in the same retraining run, on the same training window, with
every entity feature held at its fill value: an XGBoost ``ScoringModel`` over the usual 15
inputs that can only learn from the request-time ones (``TRANSACTION_FEATURES``: amount,
weekend, night). The service gives it the rows it has to fill.

Registry layout (docs/serving.md, "Degraded mode"): each fallback is a version of its own
registered model ``<model_name>_fallback``; every version of ``<model_name>`` trained on the
same training-set version carries the tag ``fallback_version`` naming it, so whichever of them
is or becomes champion (gate, manual promotion, rollback) brings its fallback along, with no
second alias to keep in step.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fraudops.contracts import CHAMPION, ENTITY_FEATURES, feature_dtype
from fraudops.settings import Settings
from ml import tracking
from ml.baseline import amount_rule_scores
from ml.dataset import TrainingData, load_training_set
from ml.metrics import classification_metrics
from ml.model import model_input
from ml.pipeline import KEY_METRICS, make_splits
from ml.registry import alias_version
from ml.train import XGB_GRID, Progress, search_xgboost, train_xgboost

log = logging.getLogger(__name__)

# Tag on a version of <model_name>: the version of <model_name>_fallback that goes with it.
FALLBACK_TAG = "fallback_version"
# Tags on a fallback version: the training-set version, and the model versions it serves.
DATA_VERSION_TAG = "data_version"
FOR_VERSIONS_TAG = "fallback_for"
# The fill value of every entity feature (features/store/training.py ``fill_missing``, and
# serving's ``fallback_values``): what a degraded row carries.
FILL_VALUE = 0


def fallback_model_name(model_name: str) -> str:
    """The registered model that holds the fallbacks of ``model_name``."""
    return f"{model_name}_fallback"


def request_time_only(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every entity feature at its fill value: what a degraded row looks like."""
    out = frame.copy()
    for name in ENTITY_FEATURES:
        out[name] = np.full(len(out), FILL_VALUE, dtype=feature_dtype(name))
    return out


@dataclass(frozen=True)
class TrainedFallback:
    """A fallback model logged to MLflow, with its test-window figures."""

    run_id: str
    model_uri: str
    data_version: int
    validation_ap: float
    metrics: dict[str, float]
    baseline: dict[str, float]


@dataclass(frozen=True)
class RegisteredFallback:
    """Where a fallback went in the registry, and which model versions it serves."""

    name: str
    version: str
    serves: list[str]


def train_fallback(
    settings: Settings,
    data: TrainingData | None = None,
    xgb_space: dict[str, list[object]] | None = None,
    progress: Progress | None = None,
) -> TrainedFallback:
    """Train the request-time model on the candidates' training window; log it as a run."""
    say = progress or (lambda _message: None)
    tracking.configure(settings)
    data = data or load_training_set(settings)
    splits = make_splits(request_time_only(data.frame), settings)
    seed = settings.train_seed
    space = xgb_space or XGB_GRID
    with mlflow.start_run(run_name="fallback-model", tags=tracking.run_tags(seed)) as run:
        mlflow.set_tag("candidate", "fallback")
        tracking.log_dataset(data, splits.train, "training")
        say(f"fallback: grid search on {len(splits.validation_train):,} rows (request-time inputs)")
        params, trials = search_xgboost(
            splits.validation_train,
            splits.validation_test,
            seed,
            space,
            lambda message: say(f"fallback: {message}"),
        )
        validation_ap = max(t["validation_ap"] for t in trials)
        say(f"fallback: final fit on {len(splits.train):,} training rows")
        model = train_xgboost(splits.train, params, seed)
        test = splits.test_frame
        metrics = classification_metrics(test, model.predict_proba(model_input(test)))
        say(f"fallback: test AP {metrics['average_precision']:.4f}; logging the model to MLflow")
        baseline = classification_metrics(test, amount_rule_scores(test))
        mlflow.log_params(
            {
                "model_kind": "xgboost",
                "inputs": "request-time features (entity features at their fill value)",
                "seed": seed,
                "train_rows": len(splits.train),
                "data_version": data.version,
                "data_digest": data.digest,
                **splits.test.as_params("window_"),
                **{f"model_{k}": v for k, v in params.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            model_uri = tracking.log_scoring_model(model, splits.train, Path(tmp))
        mlflow.log_metrics(
            {
                "validation_ap": validation_ap,
                **{f"test_{k}": v for k, v in metrics.items()},
                **{f"baseline_{k}": v for k, v in baseline.items() if k in KEY_METRICS},
            }
        )
    return TrainedFallback(
        run.info.run_id, model_uri, data.version, validation_ap, metrics, baseline
    )


def _ensure_registered(client: MlflowClient, name: str, model_name: str) -> None:
    try:
        client.create_registered_model(
            name,
            description=(
                f"Request-time fallback models of {model_name!r}: they answer when the online "
                "feature store cannot (the versions of that model name theirs in the "
                f"{FALLBACK_TAG!r} tag)."
            ),
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _served_versions(client: MlflowClient, model_name: str, data_version: int) -> list[str]:
    """Versions of ``model_name`` trained on ``data_version``, and a champion without fallback.

    The champion kept by the gate may predate fallbacks: it gets this one too (trained on a
    newer training set, but on request-time features only) rather than none.
    """
    versions = [
        str(mv.version)
        for mv in client.search_model_versions(f"name='{model_name}'")
        if mv.tags.get("data_version") == str(data_version)
    ]
    champion = alias_version(client, model_name, CHAMPION)
    if champion is not None and FALLBACK_TAG not in champion.tags:
        versions.append(str(champion.version))
    return sorted(set(versions), key=int)


def register_fallback(settings: Settings, trained: TrainedFallback) -> RegisteredFallback:
    """Register ``trained`` as a fallback version and tag the model versions it goes with."""
    client = tracking.configure(settings)
    name = fallback_model_name(settings.model_name)
    _ensure_registered(client, name, settings.model_name)
    serves = _served_versions(client, settings.model_name, trained.data_version)
    tags = {
        DATA_VERSION_TAG: str(trained.data_version),
        FOR_VERSIONS_TAG: ",".join(serves),
        **{f"test_{k}": f"{trained.metrics[k]:.6f}" for k in KEY_METRICS},
    }
    version = str(
        client.create_model_version(
            name,
            trained.model_uri,
            run_id=trained.run_id,
            tags=tags,
            model_id=tracking.logged_model_id(trained.model_uri),
        ).version
    )
    for served in serves:
        client.set_model_version_tag(settings.model_name, served, FALLBACK_TAG, version)
    if not serves:
        log.warning(
            "no version of %r was trained on training-set version %d: fallback %s of %r "
            "serves none yet",
            settings.model_name,
            trained.data_version,
            version,
            name,
        )
    return RegisteredFallback(name, version, serves)


def build_fallback(
    settings: Settings,
    data: TrainingData | None = None,
    xgb_space: dict[str, list[object]] | None = None,
    progress: Progress | None = None,
) -> tuple[TrainedFallback, RegisteredFallback]:
    """Train, log and register the fallback of the newest retraining run."""
    trained = train_fallback(settings, data, xgb_space, progress)
    return trained, register_fallback(settings, trained)
