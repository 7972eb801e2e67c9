"""Code and behavioural tests of the scoring models on the tiny training set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudops.settings import get_settings
from ml.baseline import amount_rule_scores
from ml.features import FEATURE_COLUMNS
from ml.model import INPUT_DTYPES, Scaler, ScoringModel, model_input
from ml.split import protocol_splits, train_test
from ml.train import grid, search_xgboost, train_mlp, train_xgboost
from tests.ml.conftest import MLP_SMALL, TINY_PROTOCOL, XGB_SPACE

PARAMS = {"max_depth": 4, "learning_rate": 0.3, "num_boost_round": 30}


@pytest.fixture(scope="module")
def windows(tiny_training_frame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test rows of the tiny protocol's test split."""
    settings = get_settings(**TINY_PROTOCOL)
    _, split = protocol_splits(tiny_training_frame, settings)
    return train_test(
        tiny_training_frame, split, settings.label_delay_days, settings.known_card_memory_days
    )


@pytest.fixture(scope="module")
def xgb_model(windows) -> ScoringModel:
    """An XGBoost model trained on the tiny training window."""
    return train_xgboost(windows[0], PARAMS, seed=1)


def test_scaler_is_fitted_on_the_training_rows_only(windows) -> None:
    train, test = windows
    scaler = Scaler.fit(train)
    assert np.allclose(scaler.transform(train).mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(scaler.mean, test[FEATURE_COLUMNS].to_numpy(float).mean(axis=0))


def test_model_input_casts_to_the_signature_dtypes(windows) -> None:
    frame = windows[1].astype({c: "float64" for c in FEATURE_COLUMNS})
    prepared = model_input(frame)
    assert list(prepared.columns) == FEATURE_COLUMNS
    assert prepared.dtypes.astype(str).to_dict() == INPUT_DTYPES


@pytest.mark.parametrize("kind", ["xgboost", "torch"])
def test_saved_model_scores_like_the_trained_one(kind, windows, tmp_path) -> None:
    train, test = windows
    model = train_xgboost(train, PARAMS, 1) if kind == "xgboost" else train_mlp(train, MLP_SMALL, 1)
    loaded = ScoringModel.load(model.save(tmp_path / kind))
    scores = loaded.predict_proba(test)
    assert scores.shape == (len(test),)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(scores, model.predict_proba(test), rtol=1e-6)


def test_missing_feature_column_is_a_clear_error(xgb_model, windows) -> None:
    with pytest.raises(ValueError, match="terminal_id_risk_1day_window"):
        xgb_model.predict_proba(windows[1].drop(columns="terminal_id_risk_1day_window"))


def test_xgboost_beats_the_amount_rule(xgb_model, windows) -> None:
    test = windows[1]
    model, rule = xgb_model.predict_proba(test), amount_rule_scores(test)
    labels = test["is_fraud"]
    assert average_precision_score(labels, model) > average_precision_score(labels, rule)
    assert roc_auc_score(labels, model) > roc_auc_score(labels, rule)


def test_larger_amount_never_lowers_a_risky_transaction_score(xgb_model, windows) -> None:
    test = windows[1]
    risky = test[xgb_model.predict_proba(test) >= 0.5].head(50)
    assert len(risky) > 0
    base = xgb_model.predict_proba(risky)
    for factor in (1.5, 3.0, 10.0):
        bigger = risky.assign(tx_amount=risky["tx_amount"] * factor)
        assert (xgb_model.predict_proba(bigger) >= base - 1e-9).all()


def test_scores_ignore_identifiers_and_labels(xgb_model, windows) -> None:
    test = windows[1]
    shuffled = test.assign(
        transaction_id=test["transaction_id"][::-1].to_numpy(),
        customer_id=999_999,
        terminal_id=0,
        is_fraud=1 - test["is_fraud"],
        tx_datetime=test["tx_datetime"] + pd.Timedelta(days=400),
    )
    np.testing.assert_array_equal(xgb_model.predict_proba(shuffled), xgb_model.predict_proba(test))


def test_search_picks_the_trial_with_the_best_validation_ap(windows) -> None:
    train, test = windows
    best, trials = search_xgboost(train, test, seed=1, space=XGB_SPACE)
    assert len(trials) == len(list(grid(XGB_SPACE)))
    top = max(trials, key=lambda t: t["validation_ap"])
    assert best == {k: top[k] for k in XGB_SPACE}
