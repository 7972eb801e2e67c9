"""An MLflow models-from-code pyfunc for the serving tests: a pickled sklearn pipeline.

predict(DataFrame of the 15 FEATURE_COLUMNS) -> 1-D array of fraud probabilities, the
registry contract of the training issue, with the scaling inside the pipeline.
"""

import joblib
import mlflow
from mlflow.pyfunc import PythonModel


class PipelineProba(PythonModel):
    """Positive-class probability of a fitted sklearn pipeline."""

    def load_context(self, context):
        """Load the pipeline once."""
        self.pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(self, context, model_input, params=None):
        """Fraud probabilities, one per row."""
        return self.pipeline.predict_proba(model_input)[:, 1]


mlflow.models.set_model(PipelineProba())
