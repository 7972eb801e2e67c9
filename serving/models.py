"""Model versions behind the registry aliases, loaded once and swapped when an alias moves."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudops.settings import Settings
from ml.features import FEATURE_COLUMNS

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class ModelUnavailableError(RuntimeError):
    """The registry has no version behind the alias the service needs."""


def input_dtypes(model: object) -> dict[str, np.dtype]:
    """Column dtypes of the model's input signature (empty without a signature)."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return {}
    return dict(zip(schema.input_names(), schema.numpy_types(), strict=True))


def matrix_predictor(model: object) -> Callable[[np.ndarray], np.ndarray] | None:
    """The model's ``predict_matrix`` fast path, when its Python model offers one."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a PythonModel flavour: MLflow raises its own error types
        return None
    return getattr(python_model, "predict_matrix", None)


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version, loaded as an MLflow pyfunc."""

    alias: str
    version: str
    model: object
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    fast: Callable[[np.ndarray], np.ndarray] | None = None

    def predict(self, values: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float64 matrix of the 15 FEATURE_COLUMNS (in that order)."""
        if self.fast is not None:
            # Inputs are built by the service in FEATURE_COLUMNS order; MLflow's per-call
            # signature enforcement and a DataFrame would cost more than the model itself.
            scores = self.fast(values)
        else:
            # The signature's enforcement refuses lossy casts (float counts into int columns):
            # features travel as float64 and take the types the model was logged with here.
            inputs = pd.DataFrame(
                {
                    c: values[:, i].astype(self.dtypes.get(c, "float64"), copy=False)
                    for i, c in enumerate(FEATURE_COLUMNS)
                }
            )
            scores = self.model.predict(inputs)
        return np.clip(np.asarray(scores, dtype="float64").reshape(-1), 0.0, 1.0)


class ModelSource:
    """Resolves ``champion``/``challenger`` in the MLflow registry and keeps them loaded."""

    def __init__(self, settings: Settings) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        # No telemetry or other network traffic from MLflow.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        self.name = settings.model_name
        self.client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def _alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def _load(self, alias: str, version: str) -> LoadedModel:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")
        log.info("loaded %s version %s as %s", self.name, version, alias)
        return LoadedModel(alias, version, model, input_dtypes(model), matrix_predictor(model))

    def refresh(self) -> dict[str, str]:
        """Load whatever the aliases point to now; returns ``{alias: version}`` that changed."""
        changed = {}
        for alias in (CHAMPION, CHALLENGER):
            version = self._alias_version(alias)
            current = self._models.get(alias)
            if version is None:
                if current is not None and alias == CHALLENGER:
                    with self._lock:
                        self._models.pop(alias, None)
                    changed[alias] = ""
                continue
            if current is not None and current.version == version:
                continue
            loaded = self._load(alias, version)
            with self._lock:
                self._models[alias] = loaded
            changed[alias] = version
        return changed

    def get(self, alias: str) -> LoadedModel | None:
        """The loaded version behind ``alias``, or None."""
        return self._models.get(alias)

    def champion(self) -> LoadedModel:
        """The loaded champion; raises when the registry has none yet."""
        model = self._models.get(CHAMPION)
        if model is None:
            raise ModelUnavailableError(
                f"no '{CHAMPION}' version of model {self.name!r} in the registry: train and "
                "promote one (fraudops train) before serving"
            )
        return model

    def versions(self) -> dict[str, str]:
        """``{alias: version}`` of the loaded models."""
        return {alias: m.version for alias, m in self._models.items()}
