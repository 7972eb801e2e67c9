"""The MLflow pyfunc form of a :class:`ml.model.ScoringModel` (what the registry serves)."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from ml.model import ScoringModel

ARTIFACT = "scoring_model"

# The project modules a registered model runs when it loads (ml/pyfunc_entry.py imports
# ml.pyfunc, which imports ml.model, which imports fraudops.contracts). They travel with the
# model as its code_paths, so it loads where the repository is not installed.
MODEL_CODE = ("fraudops", "fraudops.contracts", "ml", "ml.model", "ml.pyfunc")


def stage_model_code(workdir: Path) -> list[str]:
    """Copy MODEL_CODE under ``workdir``; return the package folders as MLflow ``code_paths``.

    MLflow copies each code path by its base name into the model's ``code/`` folder and puts
    that folder first on ``sys.path`` at load time: one folder per package keeps the
    ``ml.pyfunc`` and ``fraudops.contracts`` import names.
    """
    root = workdir / "model_code"
    packages: dict[str, Path] = {}
    for name in MODEL_CODE:
        source = Path(importlib.import_module(name).__file__)
        parts = name.split(".")
        # A package's file is its __init__.py, in the package's own folder.
        folder = Path(*parts) if source.name == "__init__.py" else Path(*parts[:-1])
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / folder / source.name)
        packages[parts[0]] = root / parts[0]
    return [str(folder) for folder in packages.values()]


class FraudPyfunc(mlflow.pyfunc.PythonModel):
    """predict(DataFrame of the 15 FEATURE_COLUMNS) -> 1-D array of fraud probabilities."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the scaler and classifier from the model's artifacts once."""
        self.model = ScoringModel.load(Path(context.artifacts[ARTIFACT]))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> np.ndarray:
        """Fraud probabilities in [0, 1], one per row."""
        return self.model.predict_proba(model_input)

    def predict_matrix(self, values: np.ndarray) -> np.ndarray:
        """The fast path for callers that build the inputs themselves (the scoring service).

        ``values`` is a float64 matrix of the 15 FEATURE_COLUMNS in order; no DataFrame and no
        per-call signature checks, which cost more than the model on single rows.
        """
        return self.model.predict_matrix(values)
