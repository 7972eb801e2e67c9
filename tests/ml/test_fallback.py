"""The fallback model: trained on request-time features only, registered with its champion."""

from __future__ import annotations

import dagster as dg
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fraudops.contracts import CHAMPION, ENTITY_FEATURES, TRANSACTION_FEATURES
from ml import fallback as ml_fallback
from ml.dataset import load_training_set
from ml.fallback import FALLBACK_TAG, build_fallback, fallback_model_name, request_time_only
from ml.gate import PROMOTED, run_gate
from ml.model import model_input
from ml.pipeline import Evaluation, evaluate_model, make_splits, train_candidate
from ml.registry import register_candidates
from orchestration.defs.training.fallback import FALLBACK_MODEL, fallback_model
from orchestration.resources import SettingsResource
from serving import models as serving_models
from tests.ml.conftest import TINY_PROTOCOL, XGB_SPACE, make_ml_settings


def _champion(settings) -> str:
    """One XGBoost candidate trained, registered and promoted by the gate: its version."""
    candidate = train_candidate("xgboost", settings, xgb_space=XGB_SPACE)
    data = load_training_set(settings)
    splits = make_splits(data.frame, settings)
    metrics = {"xgboost": evaluate_model(candidate.model_uri, splits.test_frame)}
    evaluation = Evaluation(splits.test, metrics, {}, "xgboost", data.version)
    version = register_candidates([candidate], evaluation, settings)["xgboost"]
    assert run_gate(settings).decision == PROMOTED
    return version


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_lakehouse, tiny_training_frame):
    """A champion and the fallback of the same run, in a fresh tracking store."""
    home = tmp_path_factory.mktemp("fallback") / "var"
    settings = make_ml_settings(home, tiny_lakehouse.settings, tiny_training_frame)
    champion = _champion(settings)
    trained, fallback = build_fallback(settings, xgb_space=XGB_SPACE, progress=PROGRESS.append)
    return settings, champion, trained, fallback


# What the fallback's training reported through its progress callback (the run's log).
PROGRESS: list[str] = []


def test_the_fallback_reports_each_step_of_its_training(registered):
    assert PROGRESS[0].startswith("fallback: grid search on ")
    trials = [line for line in PROGRESS if line.startswith("fallback: xgboost search: trial")]
    assert len(trials) == 2  # one per combination of XGB_SPACE
    assert any(line.startswith("fallback: final fit on ") for line in PROGRESS)
    assert PROGRESS[-1].startswith("fallback: test AP ")


def test_request_time_only_holds_entity_features_at_the_fill_value(tiny_training_frame):
    frame = request_time_only(tiny_training_frame)
    assert (frame[ENTITY_FEATURES] == 0).all().all()
    assert frame[ENTITY_FEATURES].dtypes.equals(tiny_training_frame[ENTITY_FEATURES].dtypes)
    assert frame[TRANSACTION_FEATURES].equals(tiny_training_frame[TRANSACTION_FEATURES])
    assert (tiny_training_frame[ENTITY_FEATURES] != 0).any().any()  # the input is untouched


def test_the_fallback_is_registered_and_named_by_its_champion(registered):
    settings, champion, trained, fallback = registered
    client = MlflowClient(settings.tracking_uri)
    assert fallback.name == fallback_model_name(settings.model_name) == "fraud_detector_fallback"
    assert fallback.serves == [champion]
    assert client.get_model_version(settings.model_name, champion).tags[FALLBACK_TAG] == (
        fallback.version
    )
    version = client.get_model_version(fallback.name, fallback.version)
    assert version.run_id == trained.run_id
    assert version.tags["data_version"] == str(load_training_set(settings).version)
    run = client.get_run(trained.run_id)
    assert run.data.tags["candidate"] == "fallback"
    assert int(run.data.params["train_rows"]) > 0
    assert "test_average_precision" in run.data.metrics
    # The champion alias still names the champion: the fallback is a model of its own.
    assert str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version) == (
        champion
    )


def test_fallback_scores_depend_on_request_time_features_only(registered):
    settings, _, _, fallback = registered
    mlflow.set_registry_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{fallback.name}/{fallback.version}")
    test = make_splits(load_training_set(settings).frame, settings).test_frame
    scores = np.asarray(model.predict(model_input(test)))
    rng = np.random.default_rng(0)
    noisy = test.copy()
    for name in ENTITY_FEATURES:
        noisy[name] = rng.permutation(noisy[name].to_numpy())
    np.testing.assert_array_equal(np.asarray(model.predict(model_input(noisy))), scores)
    # A larger amount never lowers the score (the monotone constraint of every candidate).
    bigger = test.assign(tx_amount=test["tx_amount"] * 3.0)
    assert (np.asarray(model.predict(model_input(bigger))) >= scores - 1e-9).all()
    # Amounts above the scenario-1 threshold are always fraud: the fallback learns that much.
    assert scores[test["tx_amount"].to_numpy() > 220].min() > 0.5


def test_serving_reads_the_names_ml_writes():
    assert serving_models.FALLBACK_TAG == ml_fallback.FALLBACK_TAG
    assert serving_models.fallback_model_name("m") == ml_fallback.fallback_model_name("m")


def test_the_asset_trains_on_the_candidates_training_set(registered, monkeypatch):
    settings, champion, _, _ = registered
    monkeypatch.setenv("FRAUDOPS_HOME", str(settings.home))
    for key, value in TINY_PROTOCOL.items():
        monkeypatch.setenv(f"FRAUDOPS_{key.upper()}", str(value))
    data = load_training_set(settings)
    splits = make_splits(data.frame, settings)
    evaluation = Evaluation(splits.test, {}, {}, "xgboost", data.version)
    assert fallback_model.key == FALLBACK_MODEL
    assert dg.AssetKey(["ml", "champion"]) in fallback_model.dependency_keys
    result = fallback_model(
        context=dg.build_asset_context(),
        settings=SettingsResource(),
        evaluation=evaluation,
    )
    metadata = result.metadata
    assert metadata["serves_versions"].value == [champion]
    client = MlflowClient(settings.tracking_uri)
    tag = client.get_model_version(settings.model_name, champion).tags[FALLBACK_TAG]
    assert tag == metadata["fallback_version"] == "2"  # the newest fallback of the same data
