"""Behavioural tests of a trained model: what any fraud model of the platform must do.

A trained model beats the trivial amount rule, a larger amount never lowers the score of an
otherwise identical risky transaction, and scores ignore identifiers and labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from ml.baseline import amount_rule_scores


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
