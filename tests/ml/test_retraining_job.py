"""The Dagster retraining job end to end on the tiny training set."""

from __future__ import annotations

import dagster as dg
import mlflow
import numpy as np

from ml import tracking
from ml.dataset import load_training_set
from ml.model import model_input
from orchestration.defs import training
from orchestration.defs.training.assets import (
    CHAMPION,
    ML_KEYS,
    MODEL_EVALUATION,
    XGBOOST_CANDIDATE,
)
from orchestration.resources import SettingsResource
from tests.ml.conftest import TINY_PROTOCOL


def test_retraining_job_trains_registers_and_promotes(ml_settings, monkeypatch) -> None:
    monkeypatch.setenv("FRAUDOPS_HOME", str(ml_settings.home))
    for key, value in TINY_PROTOCOL.items():
        monkeypatch.setenv(f"FRAUDOPS_{key.upper()}", str(value))
    defs = dg.Definitions.merge(
        training.build_defs(), dg.Definitions(resources={"settings": SettingsResource()})
    )
    result = defs.resolve_job_def("retraining").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(ML_KEYS)
    metadata = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert metadata[CHAMPION]["decision"].value == "promoted"
    run_link = metadata[XGBOOST_CANDIDATE]["mlflow_run"].value
    assert run_link.startswith(f"{ml_settings.mlflow_ui_url}/#/experiments/")
    assert run_link.endswith(metadata[XGBOOST_CANDIDATE]["mlflow_run_id"].value)
    evaluation = result.output_for_node(MODEL_EVALUATION.to_python_identifier())
    assert set(evaluation.metrics) == {"xgboost", "torch"}

    # Serving's view: the champion alias resolves to a pyfunc scoring the 15 features.
    tracking.configure(ml_settings)
    model = mlflow.pyfunc.load_model(f"models:/{ml_settings.model_name}@champion")
    rows = model_input(load_training_set(ml_settings).frame.head(20))
    scores = np.asarray(model.predict(rows))
    assert scores.shape == (20,)
    assert ((scores >= 0) & (scores <= 1)).all()
