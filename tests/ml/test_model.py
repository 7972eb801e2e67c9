"""Code tests of the scoring models: scaling, signature dtypes, saving, errors, search."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.contracts import FEATURE_COLUMNS
from ml.model import INPUT_DTYPES, Scaler, ScoringModel, model_input
from ml.train import grid, search_xgboost, train_mlp, train_xgboost
from tests.ml.conftest import MLP_SMALL, PARAMS, XGB_SPACE


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


def test_search_picks_the_trial_with_the_best_validation_ap(windows) -> None:
    train, test = windows
    best, trials = search_xgboost(train, test, seed=1, space=XGB_SPACE)
    assert len(trials) == len(list(grid(XGB_SPACE)))
    top = max(trials, key=lambda t: t["validation_ap"])
    assert best == {k: top[k] for k in XGB_SPACE}
