"""The MLflow pyfunc form of a :class:`ml.model.ScoringModel` (what the registry serves)."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from ml.model import ScoringModel

ARTIFACT = "scoring_model"


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
