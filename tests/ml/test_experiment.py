"""The model's MLflow experiment is typed as classic machine learning for the MLflow UI."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from fraudops.settings import get_settings
from ml import tracking
from ml.experiment import EXPERIMENT_KIND_TAG, MACHINE_LEARNING, mark_machine_learning


def _kind(settings) -> str | None:
    client = MlflowClient(settings.tracking_uri)
    return client.get_experiment_by_name(settings.model_name).tags.get(EXPERIMENT_KIND_TAG)


def test_the_training_experiment_is_machine_learning(tmp_path):
    settings = get_settings(home=tmp_path / "var")
    tracking.configure(settings)
    assert _kind(settings) == MACHINE_LEARNING


def test_an_experiment_made_before_gets_the_type_on_the_next_run(tmp_path):
    settings = get_settings(home=tmp_path / "var")
    tracking.configure(settings)
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.model_name)
    client.delete_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG)
    assert _kind(settings) is None
    tracking.configure(settings)
    assert _kind(settings) == MACHINE_LEARNING


def test_a_type_chosen_in_the_ui_is_kept(tmp_path):
    settings = get_settings(home=tmp_path / "var")
    tracking.configure(settings)
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.model_name)
    client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, "genai_development")
    mark_machine_learning(client, settings.model_name)
    assert _kind(settings) == "genai_development"


def test_marking_a_missing_experiment_is_an_error(tmp_path):
    settings = get_settings(home=tmp_path / "var")
    client = tracking.configure(settings)
    with pytest.raises(LookupError, match="no_such_experiment"):
        mark_machine_learning(client, "no_such_experiment")
