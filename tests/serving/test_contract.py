"""The training issue's real registered model (ml/) is servable by the scoring core."""

from __future__ import annotations

import datetime as dt

import numpy as np

from fraudops.settings import get_settings
from ml.model import model_input
from serving.features import GuardedFeatures
from serving.journal import decode, encode
from serving.models import ModelSource
from serving.prediction_log import to_arrow
from serving.schemas import Transaction
from serving.scoring import Scorer
from tests.serving import fixtures as fx


def test_the_ml_pyfunc_is_served_with_its_own_scores(tmp_path, world):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {"max_depth": 3, "learning_rate": 0.3, "num_boost_round": 20}
    version, model = fx.register_scoring_model(uri, tmp_path, world, params, seed=1)
    fx.set_alias(uri, "champion", version)

    settings = get_settings(home=tmp_path / "var", mlflow_tracking_uri=uri)
    models = ModelSource(settings)
    assert models.refresh() == {"champion": str(version)}
    # No online store here: every row takes the fallback, which the expected values mirror.
    scorer = Scorer(settings, models, GuardedFeatures(None, timeout_s=0.1, retry_s=1.0))
    when = dt.datetime(2018, 5, 16, 23, 30, tzinfo=dt.UTC)
    amounts = [5.0, 80.0, 250.0, 900.0]
    scored = scorer.score(
        [
            Transaction(transaction_id=i, customer_id=1, terminal_id=1, amount=a, timestamp=when)
            for i, a in enumerate(amounts)
        ]
    )
    expected_rows = world.training.head(len(amounts)).copy()
    expected_rows[[c for c in expected_rows if c.startswith(("customer_id_", "terminal_id_"))]] = 0
    expected_rows["tx_amount"] = amounts
    expected_rows["tx_during_weekend"] = 0  # 2018-05-16 is a Wednesday
    expected_rows["tx_during_night"] = 0  # 23:30 is not <= 6 h
    want = model.predict_proba(model_input(expected_rows))
    got = np.array([r.score for r in scored.results])
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The service took the model's matrix fast path, which equals MLflow's checked predict.
    champion = models.champion()
    assert champion.fast is not None
    np.testing.assert_allclose(champion.model.predict(model_input(expected_rows)), got, atol=1e-6)
    assert all(r.degraded and r.model_version == str(version) for r in scored.results)
    assert got[-1] >= got[0]  # the model's monotone amount constraint survives serving
    # The journal reads back exactly what the scorer logs (its unpickler admits no more).
    replayed = to_arrow(decode(encode(scored.log_rows)))
    assert replayed.equals(to_arrow(scored.log_rows))
