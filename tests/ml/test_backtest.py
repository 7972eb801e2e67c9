"""The gate's backtest on logged traffic: a tiny prediction log written by the serving code."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from fraudops.contracts import CHAMPION, FEATURE_COLUMNS
from ml.backtest import backtest_version, load_labelled_traffic
from ml.dataset import load_training_set
from ml.gate import KEPT, PROMOTED, backtest_verdict, run_gate
from ml.pipeline import Evaluation, evaluate_model, make_splits, train_candidate
from ml.registry import register_candidates
from serving.models import ModelSource
from serving.prediction_log import PredictionLog
from serving.scoring import decide
from tests.ml.conftest import XGB_SPACE, make_ml_settings
from tests.serving import fixtures as fx

# Logged traffic: every transaction of the simulation's last days, labelled or not yet.
LOGGED_DAYS = 14


def _register(settings, data=None) -> str:
    """Train, evaluate (metrics only) and register one XGBoost candidate as challenger."""
    candidate = train_candidate("xgboost", settings, data, xgb_space=XGB_SPACE)
    data = data or load_training_set(settings)
    splits = make_splits(data.frame, settings)
    metrics = {"xgboost": evaluate_model(candidate.model_uri, splits.test_frame)}
    evaluation = Evaluation(splits.test, metrics, {}, "xgboost", data.version)
    return register_candidates([candidate], evaluation, settings)["xgboost"]


def _log_traffic(settings, world: fx.TinyWorld) -> pd.DataFrame:
    """Score the last days' transactions with the served champion and log them as the
    service does (serving's model source, decision rule and prediction-log writer)."""
    frame = world.training
    last = frame["tx_datetime"].max().date()
    frame = frame[frame["tx_datetime"].dt.date > last - dt.timedelta(days=LOGGED_DAYS)]
    frame = frame.reset_index(drop=True)
    models = ModelSource(settings)
    models.refresh()
    champion = models.champion()
    inputs = frame[FEATURE_COLUMNS].to_numpy(dtype="float64")
    scores = champion.predict(inputs)
    n = len(frame)
    rows = {
        "scored_at": dt.datetime.now(dt.UTC),
        "transaction_id": frame["transaction_id"].to_numpy(),
        "customer_id": frame["customer_id"].to_numpy(),
        "terminal_id": frame["terminal_id"].to_numpy(),
        "tx_datetime": frame["tx_datetime"].dt.tz_localize(None).to_numpy("datetime64[us]"),
        **{c: inputs[:, i] for i, c in enumerate(FEATURE_COLUMNS)},
        "features_as_of": [t.to_pydatetime() for t in frame["feature_timestamp"]],
        "degraded": np.zeros(n, dtype=bool),
        "score": scores,
        "decision": decide(
            scores, settings.serving_review_threshold, settings.serving_decline_threshold
        ),
        "model_version": champion.version,
        "served_by": CHAMPION,
        "routing": "champion",
        "champion_version": champion.version,
        "champion_score": scores,
        "challenger_version": None,
        "challenger_score": np.full(n, np.nan),
        "latency_ms": np.ones(n),
        "batch_size": n,
    }
    log = PredictionLog(settings.prediction_log_uri, batch_rows=10 * n, flush_s=3600.0)
    log.append(rows)
    assert log.close() == n
    return frame


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_lakehouse, tiny_training_frame):
    """A champion chosen by the gate without traffic, then a day range of its logged traffic."""
    home = tmp_path_factory.mktemp("backtest") / "var"
    # The raw fraud reports are where the backtest takes the labels from.
    shutil.copytree(tiny_lakehouse.settings.home / "lakehouse", home / "lakehouse")
    settings = make_ml_settings(home, tiny_lakehouse.settings, tiny_training_frame)
    version = _register(settings)
    first_gate = run_gate(settings)
    traffic = _log_traffic(settings, fx.build_world(tiny_lakehouse.settings))
    return settings, version, first_gate, traffic


def test_without_logged_traffic_the_gate_says_so_and_decides_on_the_test_window(served):
    settings, version, decision, _ = served
    assert decision.decision == PROMOTED
    assert decision.backtest is None
    assert decision.backtest_note.startswith("no logged traffic: no prediction log at")
    assert decision.reason.endswith("decided on the test window alone")
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    tags = client.get_model_version(settings.model_name, version).tags
    assert tags["gate_backtest"] == decision.backtest_note
    run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
    assert run.data.tags["backtest"] == decision.backtest_note


def test_labelled_traffic_holds_the_newest_days_whose_labels_are_known(served):
    settings, _, _, logged = served
    traffic = load_labelled_traffic(settings)
    cutoff = traffic.labels_known_until - dt.timedelta(days=settings.label_delay_days)
    assert not traffic.frame.empty
    # Some logged transactions are too recent to be labelled: they are left out.
    assert (logged["tx_datetime"] > cutoff).any()
    assert (traffic.frame["tx_datetime"] <= cutoff).all()
    assert traffic.frame["tx_date"].nunique() == settings.backtest_days
    assert max(traffic.frame["tx_date"]) == cutoff.date()
    # The labels joined from the raw fraud reports are the simulation's truth.
    truth = logged.set_index("transaction_id")["is_fraud"]
    labels = traffic.frame.set_index("transaction_id")["is_fraud"]
    assert (labels == truth.loc[labels.index]).all()
    assert 0 < labels.sum() < len(labels)


def test_the_champion_replayed_on_its_own_traffic_gives_its_logged_figures(served):
    settings, version, _, _ = served
    result = backtest_version(settings, version)
    assert not isinstance(result, str), result
    assert result.champion_versions == [version]
    assert result.decision_changes == 0
    for name, value in result.champion.items():
        assert result.challenger[name] == pytest.approx(value, abs=1e-9), name
    assert result.ap_gain == pytest.approx(0.0, abs=1e-9)
    assert result.rows == len(load_labelled_traffic(settings).frame)


def test_the_gate_records_the_backtest_and_stops_a_challenger_worse_on_real_traffic(served):
    settings, champion, _, _ = served
    real = load_training_set(settings)
    rng = np.random.default_rng(3)
    shuffled = real.frame.assign(is_fraud=rng.permutation(real.frame["is_fraud"].to_numpy()))
    weak = _register(settings, dataclasses.replace(real, frame=shuffled))
    # Floors off and a negative margin: the test window alone would promote it.
    lenient = settings.model_copy(
        update={
            "promotion_min_ap": 0.0,
            "promotion_min_roc_auc": 0.0,
            "promotion_ap_margin": -1.0,
            "promotion_backtest_max_ap_drop": 0.05,
        }
    )
    decision = run_gate(lenient)
    assert decision.decision == KEPT, decision.reason
    assert decision.backtest is not None and decision.backtest.ap_gain < -0.05
    assert "on logged traffic its AP is" in decision.reason
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    assert str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version) == champion
    mv = client.get_model_version(settings.model_name, weak)
    assert mv.tags["gate_backtest"].startswith("backtest on ")
    metrics = client.get_run(mv.run_id).data.metrics
    assert metrics["backtest_rows"] == decision.backtest.rows
    assert metrics["backtest_champion_average_precision"] == pytest.approx(
        decision.backtest.champion["average_precision"]
    )
    assert metrics["backtest_decision_changes"] == decision.backtest.decision_changes
    # Recording only (a limit of 1), the same figures would not stop it.
    passed, reason = backtest_verdict(
        True,
        "passes",
        decision.backtest,
        "",
        lenient.model_copy(update={"promotion_backtest_max_ap_drop": 1.0}),
    )
    assert passed and reason.startswith("passes; backtest on")
