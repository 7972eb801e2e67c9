"""The type of the model's MLflow experiment: classic machine learning, not a GenAI app.

MLflow 3's UI reads the experiment tag ``mlflow.experimentKind``: without it, it guesses and
opens on the GenAI overview (traces, evaluations, prompts); with ``custom_model_development``
(shown as "Machine learning") it opens on the training runs, their metrics and models.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MACHINE_LEARNING = "custom_model_development"


def mark_machine_learning(client: MlflowClient, experiment_name: str) -> None:
    """Give the experiment the classic-ML type unless it already has a type (a user's choice)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise LookupError(f"MLflow experiment {experiment_name!r} does not exist")
    if not experiment.tags.get(EXPERIMENT_KIND_TAG):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MACHINE_LEARNING)
