"""Models-from-code entry point: MLflow runs this file when it loads a registered model.

Logging the model from code instead of a cloudpickled object means nothing executable is
unpickled at load time; the class itself lives in ``ml.pyfunc``.
"""

import mlflow.models

from ml.pyfunc import FraudPyfunc

mlflow.models.set_model(FraudPyfunc())
