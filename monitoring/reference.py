"""The reference profile of a model version: the rows it was trained on, and its scores on them.

A training run records the training-set Delta version it read (``data_version``) and its
protocol windows (``window_train_start`` .. ``window_train_end``) as MLflow run params
(ml/pipeline.py ``train_candidate``): the reference is exactly those rows, the 15 model inputs,
the label, and the version's own score on them (its pyfunc, as the service loads it).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from deltalake.exceptions import DeltaError

from fraudops.contracts import CHAMPION, FEATURE_COLUMNS
from fraudops.settings import Settings
from ml import tracking
from ml.dataset import load_training_set
from ml.model import model_input
from ml.registry import alias_version
from ml.split import between
from monitoring import store
from monitoring.profiles import Profile, profile_frame

log = logging.getLogger(__name__)

REFERENCE_COLUMNS = [*FEATURE_COLUMNS, "score", "is_fraud"]


@dataclass(frozen=True)
class ReferenceInfo:
    """A stored reference profile: the model version, its file and the rows profiled."""

    version: str
    path: Path
    rows: int


@dataclass(frozen=True)
class TrainingWindow:
    """Which rows a version was trained on, as its MLflow run recorded them."""

    data_version: int
    start: dt.date
    end: dt.date


def champion_version(settings: Settings) -> str:
    """The version the registry's ``champion`` alias points at."""
    client = tracking.configure(settings)
    champion = alias_version(client, settings.model_name, CHAMPION)
    if champion is None:
        raise LookupError(
            f"model {settings.model_name!r} has no champion; run the retraining job and "
            "promote a version first"
        )
    return str(champion.version)


def training_window(settings: Settings, version: str) -> TrainingWindow:
    """The training-set version and training window recorded by ``version``'s run."""
    client = tracking.configure(settings)
    model_version = client.get_model_version(settings.model_name, version)
    params = client.get_run(model_version.run_id).data.params
    try:
        return TrainingWindow(
            data_version=int(params["data_version"]),
            start=dt.date.fromisoformat(params["window_train_start"]),
            end=dt.date.fromisoformat(params["window_train_end"]),
        )
    except KeyError as exc:
        raise LookupError(
            f"the run of version {version} lacks the param {exc}; it was not trained by "
            "ml.pipeline.train_candidate, so its training rows are unknown"
        ) from exc


def training_rows(settings: Settings, window: TrainingWindow) -> pd.DataFrame:
    """The rows of the training window, from the training-set version the run read.

    When that version was vacuumed away, the same window of the newest version is used (the
    feature pipeline recomputes the same values) and a warning says so.
    """
    try:
        data = load_training_set(settings, version=window.data_version)
    except (DeltaError, OSError) as exc:
        log.warning(
            "training set version %d is no longer readable (%s); using the newest version's "
            "rows of %s..%s",
            window.data_version,
            exc,
            window.start,
            window.end,
        )
        data = load_training_set(settings)
    rows = between(data.frame, window.start, window.end)
    if rows.empty:
        raise ValueError(
            f"training set version {data.version} holds no row of {window.start}..{window.end}"
        )
    return rows.reset_index(drop=True)


def score_rows(settings: Settings, version: str, rows: pd.DataFrame) -> np.ndarray:
    """Scores of model ``version`` (its registered pyfunc) on ``rows``."""
    tracking.configure(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    return np.asarray(model.predict(model_input(rows)), dtype="float64")


def reference_frame(rows: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """The profiled columns of a reference: model inputs as float64, score, label."""
    frame = rows[FEATURE_COLUMNS].astype("float64")
    frame["score"] = scores
    frame["is_fraud"] = rows["is_fraud"].astype("int64").to_numpy()
    return frame


def reference_path(settings: Settings, version: str) -> Path:
    """Where the reference profile of ``version`` is stored."""
    return store.reference_file(settings, str(version))


def build_reference_profile(settings: Settings, version: str | None = None) -> ReferenceInfo:
    """Profile the training rows of ``version`` (None: the champion) with its scores; store it."""
    version = str(version) if version is not None else champion_version(settings)
    window = training_window(settings, version)
    rows = training_rows(settings, window)
    frame = reference_frame(rows, score_rows(settings, version, rows))
    profile = profile_frame(
        frame, chunk_rows=settings.monitoring_chunk_rows, workers=settings.monitoring_workers
    )
    path = profile.write(reference_path(settings, version))
    store.write_json(
        path.with_suffix(".json"),
        {
            "version": version,
            "rows": len(frame),
            "data_version": window.data_version,
            "train_start": window.start.isoformat(),
            "train_end": window.end.isoformat(),
            "fraud_rate": float(frame["is_fraud"].mean()),
        },
    )
    return ReferenceInfo(version=version, path=path, rows=len(frame))


def load_reference(settings: Settings, version: str) -> Profile:
    """The stored reference profile of ``version``."""
    path = reference_path(settings, str(version))
    if not path.exists():
        raise FileNotFoundError(
            f"no reference profile of model version {version} at {path}; build it first "
            "(monitoring.reference.build_reference_profile)"
        )
    return Profile.read(path)
