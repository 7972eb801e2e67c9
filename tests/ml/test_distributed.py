"""XGBoost on a dask.distributed LocalCluster: the same model as the in-process fit."""

from __future__ import annotations

import mlflow
import pytest
from sklearn.metrics import average_precision_score

from ml.distributed import dask_client, train_xgboost_dask
from ml.pipeline import train_candidate
from tests.ml.conftest import PARAMS, XGB_SPACE


@pytest.fixture(scope="module")
def client(tiny_lakehouse):
    """A two-worker local cluster for the module."""
    settings = tiny_lakehouse.settings.model_copy(update={"training_dask_workers": 2})
    with dask_client(settings) as client:
        yield client


def test_the_fit_runs_on_every_worker_and_scores_like_the_local_model(
    client, windows, xgb_model
) -> None:
    train, test = windows
    model = train_xgboost_dask(train, PARAMS, 1, client)
    assert len(client.scheduler_info()["workers"]) == 2
    assert model.kind == "xgboost"
    assert model.estimator.num_boosted_rounds() == PARAMS["num_boost_round"]
    # The scaler is the local fit's: the same mean and deviation per feature.
    assert (model.scaler.mean == xgb_model.scaler.mean).all()
    scores = model.predict_proba(test)
    assert scores.shape == (len(test),)
    assert ((scores >= 0) & (scores <= 1)).all()
    distributed_ap = average_precision_score(test["is_fraud"], scores)
    local_ap = average_precision_score(test["is_fraud"], xgb_model.predict_proba(test))
    # Histograms merged across workers differ from one process's only by the sketch's bins:
    # at 2,000 tiny rows that moves the ranking a little, never the model's quality.
    assert distributed_ap == pytest.approx(local_ap, abs=0.05)


def test_the_candidate_trains_on_dask_when_the_settings_say_so(ml_settings) -> None:
    settings = ml_settings.model_copy(
        update={"training_engine": "dask", "training_dask_workers": 2}
    )
    candidate = train_candidate("xgboost", settings, xgb_space=XGB_SPACE)
    run = mlflow.get_run(candidate.run_id)
    assert run.data.params["training_engine"] == "dask"
    loaded = mlflow.pyfunc.load_model(candidate.model_uri)
    assert loaded.unwrap_python_model().model.kind == "xgboost"
