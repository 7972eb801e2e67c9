"""XGBoost on a dask.distributed LocalCluster: the same model as the in-process fit."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import average_precision_score

from ml.dataset import load_training_set
from ml.distributed import (
    dask_client,
    histogram_reference,
    train_xgboost_dask,
    train_xgboost_dask_from_table,
)
from ml.model import Scaler
from ml.pipeline import make_splits, train_candidate
from ml.split import protocol_splits
from ml.train import train_xgboost
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
    # The bins are the one-process sketch's, so only the order in which the workers' histograms
    # are summed differs: the same trees, the same AP (the criterion: within 0.005).
    assert distributed_ap == pytest.approx(local_ap, abs=0.005)
    assert model.estimator.get_dump() == xgb_model.estimator.get_dump()


def test_the_reference_matrix_bins_as_one_process_does(windows) -> None:
    train, _ = windows
    features = Scaler.fit(train).transform(train)
    # A small max_bin, so that the tiny window has more distinct values than bins on some
    # features and the sketch prunes.
    one_process = xgb.QuantileDMatrix(features, max_bin=16).get_quantile_cut()
    reference = histogram_reference(features, max_bin=16)
    assert len(reference) <= 17
    ref = xgb.QuantileDMatrix(reference, max_bin=16)
    assert all(
        np.array_equal(a, b) for a, b in zip(ref.get_quantile_cut(), one_process, strict=True)
    )
    # The training matrix of a worker: its own rows, the reference's cuts.
    half = xgb.QuantileDMatrix(features[: len(features) // 2], ref=ref, max_bin=16)
    assert all(
        np.array_equal(a, b) for a, b in zip(half.get_quantile_cut(), one_process, strict=True)
    )


def test_the_candidate_trains_on_dask_when_the_settings_say_so(ml_settings) -> None:
    settings = ml_settings.model_copy(
        update={"training_engine": "dask", "training_dask_workers": 2}
    )
    candidate = train_candidate("xgboost", settings, xgb_space=XGB_SPACE)
    run = mlflow.get_run(candidate.run_id)
    assert run.data.params["training_engine"] == "dask"
    loaded = mlflow.pyfunc.load_model(candidate.model_uri)
    assert loaded.unwrap_python_model().model.kind == "xgboost"


def test_the_workers_read_the_training_window_themselves(client, ml_settings) -> None:
    frame = load_training_set(ml_settings).frame
    split = protocol_splits(frame, ml_settings)[1]
    splits = make_splits(frame, ml_settings)
    local = train_xgboost(splits.train, PARAMS, 1)
    model = train_xgboost_dask_from_table(
        ml_settings, split.train_start, split.train_end, PARAMS, 1, client
    )
    # The scaler merged from the workers' moments: the whole window's, to rounding.
    assert model.scaler.mean == pytest.approx(local.scaler.mean, rel=1e-12, abs=1e-12)
    assert model.scaler.scale == pytest.approx(local.scaler.scale, rel=1e-12)
    test = splits.test_frame
    local_ap = average_precision_score(test["is_fraud"], local.predict_proba(test))
    distributed_ap = average_precision_score(test["is_fraud"], model.predict_proba(test))
    assert distributed_ap == pytest.approx(local_ap, abs=0.005)
