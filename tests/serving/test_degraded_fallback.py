"""Degraded rows are answered by the champion's request-time fallback model, when it has one.

The registry here holds the production model type (XGBoost ScoringModel pyfuncs) as versions
1 and 2 of the model, and a fallback trained on the tiny world's request-time features,
registered by ml/fallback.py's own function: it names version 1 (the champion) only.
"""

from __future__ import annotations

import datetime as dt
import shutil
from urllib.parse import urlparse

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fraudops.contracts import ENTITY_FEATURES, FEATURE_COLUMNS, TERMINAL_FEATURES
from fraudops.settings import get_settings
from ml.fallback import TrainedFallback, register_fallback, request_time_only
from ml.pipeline import KEY_METRICS
from ml.tracking import log_scoring_model
from ml.train import train_xgboost
from serving.features import GuardedFeatures, open_feature_source
from serving.models import FALLBACK, ModelSource
from serving.schemas import Transaction
from serving.scoring import Scorer
from tests.serving import fixtures as fx

KEY = "key-degraded"
HEADERS = {"X-API-Key": KEY}
WHEN = "2018-05-16T09:30:00Z"
UNKNOWN_CUSTOMER = 999_999


@pytest.fixture(scope="module")
def fallback_registry(tmp_path_factory, world) -> str:
    """Champion 1 with fallback 1; version 2 without a fallback."""
    root = tmp_path_factory.mktemp("fallback_registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fx.register_scoring_model(uri, root, world, seed=1)
    fx.register_scoring_model(uri, root, world, seed=2)
    fx.set_alias(uri, "champion", 1)
    settings = get_settings(home=root / "home", mlflow_tracking_uri=uri)
    frame = request_time_only(world.training)
    model = train_xgboost(frame, fx.XGBOOST_PARAMS, seed=7)
    metrics = dict.fromkeys(KEY_METRICS, float("nan"))  # not evaluated here (tests/ml is)
    experiment = fx._experiment(uri, root, "serving-fallback")
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        model_uri = log_scoring_model(model, frame, root / "fallback")
    trained = TrainedFallback(run.info.run_id, model_uri, 0, 0.0, metrics, {})
    registered = register_fallback(settings, trained)
    assert registered.serves == ["1"] and registered.version == "1"
    return uri


def _settings(tmp_path, uri, **overrides):
    return get_settings(home=tmp_path / "home", mlflow_tracking_uri=uri, **overrides)


def _transactions(customers: list[int]) -> list[Transaction]:
    when = dt.datetime.fromisoformat(WHEN.replace("Z", "+00:00"))
    return [
        Transaction(
            transaction_id=i,
            customer_id=customer,
            terminal_id=1 + i,
            amount=[12.5, 80.0, 300.0][i % 3],
            timestamp=when,
        )
        for i, customer in enumerate(customers)
    ]


def _store_down_scorer(settings) -> tuple[Scorer, ModelSource]:
    models = ModelSource(settings)
    models.refresh()
    return Scorer(settings, models, GuardedFeatures(None, 0.05, 2.0)), models


def _fallback_scores(uri: str, inputs: np.ndarray) -> np.ndarray:
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/fraud_detector_fallback/1")
    rows = inputs.copy()
    rows[:, [FEATURE_COLUMNS.index(f) for f in ENTITY_FEATURES]] = 0.0
    return np.asarray(model.unwrap_python_model().predict_matrix(rows))


def test_store_down_rows_are_answered_by_the_fallback(tmp_path, fallback_registry):
    settings = _settings(tmp_path, fallback_registry)
    models = ModelSource(settings)
    assert models.refresh() == {"champion": "1", FALLBACK: "1"}
    assert models.status()["fallback_model"] == {
        "model": "fraud_detector_fallback",
        "version": "1",
        "wanted": "1",
        "champion_version": "1",
        "enabled": True,
    }
    scorer = Scorer(settings, models, GuardedFeatures(None, 0.05, 2.0))
    scored = scorer.score(_transactions([1, 2, 3, 4, 5, 6]))
    assert all(r.degraded for r in scored.results)
    assert {r.model_version for r in scored.results} == {"fallback-1"}
    rows = scored.log_rows
    inputs = np.column_stack([rows[c] for c in FEATURE_COLUMNS])
    np.testing.assert_allclose(rows["score"], _fallback_scores(fallback_registry, inputs))
    # The champion's own answer on the filled row is still logged, next to the fallback's.
    np.testing.assert_allclose(rows["champion_score"], models.champion().predict(inputs))
    assert (rows["served_by"] == "champion").all() and rows["champion_version"] == "1"
    # Amounts above the always-fraud threshold are stopped without any entity feature.
    decisions = dict(zip(rows["tx_amount"].tolist(), rows["decision"].tolist(), strict=False))
    assert decisions[300.0] != "approve" and decisions[12.5] == "approve"


def test_without_the_setting_the_champion_scores_the_filled_rows(tmp_path, fallback_registry):
    settings = _settings(tmp_path, fallback_registry, serving_fallback_model=False)
    scorer, models = _store_down_scorer(settings)
    assert models.fallback() is None
    scored = scorer.score(_transactions([1, 2, 3]))
    assert {r.model_version for r in scored.results} == {"1"}
    np.testing.assert_array_equal(scored.log_rows["score"], scored.log_rows["champion_score"])


def test_only_the_degraded_rows_of_a_call_use_the_fallback(
    tmp_path, fallback_registry, feast_repo, world
):
    settings = _settings(
        tmp_path, fallback_registry, serving_feature_repo=feast_repo, serving_feature_timeout_ms=2e3
    )
    models = ModelSource(settings)
    models.refresh()
    features = GuardedFeatures.from_settings(open_feature_source(settings), settings)
    scored = Scorer(settings, models, features).score(_transactions([3, UNKNOWN_CUSTOMER, 7]))
    versions = [r.model_version for r in scored.results]
    degraded = [r.degraded for r in scored.results]
    assert versions == ["1", "fallback-1", "1"] and degraded == [False, True, False]
    # The unknown customer's row: its terminal's features were found, and logged as used.
    terminals = world.terminal_features
    found = terminals[
        (terminals["terminal_id"] == 2) & (terminals["feature_timestamp"] == world.last_as_of)
    ]
    logged = [scored.log_rows[f][1] for f in TERMINAL_FEATURES]
    np.testing.assert_allclose(logged, found[TERMINAL_FEATURES].to_numpy(dtype=float)[0])


def test_the_fallback_follows_the_champion(tmp_path, fallback_registry):
    registry = fx.copy_registry(fallback_registry, tmp_path / "registry")
    scorer, models = _store_down_scorer(_settings(tmp_path, registry))
    assert models.fallback().version == "1"
    fx.set_alias(registry, "champion", 2)  # a champion without a fallback: today's behaviour
    assert models.refresh() == {"champion": "2", FALLBACK: ""}
    assert models.fallback() is None
    assert models.status()["fallback_model"]["wanted"] is None
    assert {r.model_version for r in scorer.score(_transactions([1, 2])).results} == {"2"}
    fx.set_alias(registry, "champion", 1)  # a rollback brings the fallback back
    assert models.refresh() == {"champion": "1", FALLBACK: "1"}
    assert {r.model_version for r in scorer.score(_transactions([1])).results} == {"fallback-1"}


def test_a_fallback_that_does_not_load_leaves_the_champion_answering(tmp_path, fallback_registry):
    registry = fx.copy_registry(fallback_registry, tmp_path / "registry")
    client = MlflowClient(registry, registry)
    shutil.rmtree(
        urlparse(client.get_model_version_download_uri("fraud_detector_fallback", "1")).path
    )
    scorer, models = _store_down_scorer(_settings(tmp_path, registry))
    assert models.champion().version == "1" and models.fallback() is None
    problem = models.status()["problems"][FALLBACK]
    assert "version 1" in problem and "fill values" in problem
    assert {r.model_version for r in scorer.score(_transactions([1, 2])).results} == {"1"}


def test_the_service_answers_degraded_requests_with_the_fallback(
    start_server, tmp_path, fallback_registry, unreachable_feast_repo
):
    env = fx.service_env(
        tmp_path / "home",
        fallback_registry,
        unreachable_feast_repo,
        serving_api_keys=[KEY],
        serving_feature_timeout_ms=200,
        serving_log_flush_s=0.3,
    )
    server = start_server(env)
    row = fx.transaction(77, 3, 5, 42.0, WHEN)
    answer = httpx.post(
        f"{server.url}/v1/score", json={"transaction": row}, headers=HEADERS, timeout=60
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["degraded"] is True and body["model_version"] == "fallback-1"
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503  # the store is down; the body says who answers meanwhile
    assert ready.json()["fallback_model"]["version"] == "1"
    assert server.stop() == 0
    log = fx.prediction_log(env)
    assert log["model_version"].tolist() == ["fallback-1"] and log["degraded"].all()
