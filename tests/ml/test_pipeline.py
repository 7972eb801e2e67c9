"""Training runs end to end on the tiny training set: MLflow records and reproducibility."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import xgboost
from mlflow.tracking import MlflowClient

from fraudops.contracts import FEATURE_COLUMNS
from ml.dataset import load_training_set
from ml.metrics import classification_metrics
from ml.model import model_input
from ml.pipeline import Candidate, evaluate_candidates, make_splits, train_candidate
from tests.ml.conftest import MLP_SMALL, XGB_SPACE, make_ml_settings


def _train(kind: str, settings) -> Candidate:
    return train_candidate(kind, settings, xgb_space=XGB_SPACE, mlp_params=MLP_SMALL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_lakehouse, tiny_training_frame):
    """Both candidates trained and evaluated once in a fresh tracking store."""
    home = tmp_path_factory.mktemp("pipeline") / "var"
    settings = make_ml_settings(home, tiny_lakehouse.settings, tiny_training_frame)
    candidates = [_train("xgboost", settings), _train("torch", settings)]
    return settings, candidates, evaluate_candidates(candidates, settings)


def test_run_records_params_data_code_and_packages(trained) -> None:
    settings, candidates, _ = trained
    client = MlflowClient(settings.tracking_uri)
    data = load_training_set(settings)
    run = client.get_run(candidates[0].run_id)
    assert run.data.params["seed"] == str(settings.train_seed)
    assert run.data.params["data_version"] == str(data.version)
    assert run.data.params["model_max_depth"] in {"2", "4"}
    assert run.data.tags["mlflow.source.git.commit"]
    assert run.data.tags["package.xgboost"] == xgboost.__version__
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].digest == data.digest
    assert f'"delta_table_version": {data.version}' in inputs["training"].source
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/reliability.png",
        "plots/feature_importance.png",
    }
    for key in (
        "test_average_precision",
        "test_card_precision_at_100",
        "test_ece",
        "test_latency_p99_ms",
        "baseline_average_precision",
        "model_size_bytes",
    ):
        assert key in run.data.metrics, key


def test_logged_model_is_a_pyfunc_returning_probabilities(trained) -> None:
    settings, candidates, _ = trained
    test = make_splits(load_training_set(settings).frame, settings).test_frame
    for candidate in candidates:
        model = mlflow.pyfunc.load_model(candidate.model_uri)
        assert model.metadata.get_input_schema().input_names() == FEATURE_COLUMNS
        scores = np.asarray(model.predict(model_input(test)))
        assert scores.shape == (len(test),)
        assert ((scores >= 0) & (scores <= 1)).all()


def test_evaluation_compares_every_candidate_with_the_baseline(trained) -> None:
    _, candidates, evaluation = trained
    assert set(evaluation.metrics) == {"xgboost", "torch"}
    assert evaluation.selected == max(candidates, key=lambda c: c.validation_ap).kind
    assert (
        evaluation.metrics["xgboost"]["average_precision"]
        > evaluation.baseline["average_precision"]
    )


def test_retraining_on_the_same_data_version_and_seed_reproduces_the_metrics(ml_settings) -> None:
    test = make_splits(load_training_set(ml_settings).frame, ml_settings).test_frame
    for kind in ("xgboost", "torch"):
        first, second = _train(kind, ml_settings), _train(kind, ml_settings)
        assert first.run_id != second.run_id
        assert first.validation_ap == second.validation_ap
        a, b = (
            classification_metrics(
                test, mlflow.pyfunc.load_model(c.model_uri).predict(model_input(test))
            )
            for c in (first, second)
        )
        assert a == b
