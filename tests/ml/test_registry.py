"""Registry, promotion gate and rollback, against the real PostgreSQL of the production profile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.model import app
from fraudops.contracts import CHALLENGER, CHAMPION
from fraudops.settings import Settings, get_settings
from ml import tracking
from ml.dataset import TrainingData, load_training_set
from ml.gate import AWAITING, KEPT, PROMOTED, decide, run_gate
from ml.pipeline import Candidate, Evaluation, evaluate_model, make_splits, train_candidate
from ml.registry import (
    champion_summary,
    list_versions,
    promote,
    register_candidates,
    rollback,
)
from tests.ml.conftest import XGB_SPACE, make_ml_settings

GOOD = {"average_precision": 0.70, "roc_auc": 0.90, "latency_p99_ms": 1.0}


def test_gate_promotes_a_first_model_that_meets_the_floors() -> None:
    settings = get_settings(promotion_min_ap=0.5, promotion_min_roc_auc=0.8)
    assert decide(GOOD, None, settings)[0]
    weak = {**GOOD, "roc_auc": 0.75}
    promote_it, reason = decide(weak, None, settings)
    assert not promote_it
    assert "ROC AUC 0.7500 < floor 0.8" in reason


def test_gate_needs_the_margin_over_the_champion() -> None:
    settings = get_settings(promotion_ap_margin=0.01, promotion_min_ap=0.5)
    assert decide({**GOOD, "average_precision": 0.72}, GOOD, settings)[0]
    assert not decide({**GOOD, "average_precision": 0.705}, GOOD, settings)[0]
    assert not decide({**GOOD, "average_precision": 0.60}, GOOD, settings)[0]


def test_gate_never_promotes_past_the_latency_ceiling() -> None:
    settings = get_settings(promotion_max_p99_ms=2.0)
    slow = {**GOOD, "average_precision": 0.99, "latency_p99_ms": 3.0}
    promote_it, reason = decide(slow, GOOD, settings)
    assert not promote_it
    assert "p99 latency" in reason


def _register(settings: Settings, data: TrainingData | None = None) -> tuple[str, Candidate]:
    """Train, evaluate (metrics only, no plots) and register one XGBoost candidate."""
    candidate = train_candidate("xgboost", settings, data, xgb_space=XGB_SPACE)
    data = data or load_training_set(settings)
    splits = make_splits(data.frame, settings)
    metrics = {"xgboost": evaluate_model(candidate.model_uri, splits.test_frame)}
    evaluation = Evaluation(splits.test, metrics, {}, "xgboost", data.version)
    version = register_candidates([candidate], evaluation, settings)["xgboost"]
    return version, candidate


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


@pytest.mark.services
def test_registry_lifecycle_on_postgresql(
    postgres_dsn, tmp_path, tiny_lakehouse, tiny_training_frame, monkeypatch
) -> None:
    settings = make_ml_settings(
        tmp_path / "var",
        tiny_lakehouse.settings,
        tiny_training_frame,
        mlflow_tracking_uri=postgres_dsn,
    )
    client = tracking.configure(settings)
    name = settings.model_name

    # 1. First candidate: no champion yet, floors hold -> champion.
    first, candidate = _register(settings)
    decision = run_gate(settings)
    assert decision.decision == PROMOTED, decision.reason
    assert _aliases(client, name) == {CHALLENGER: first, CHAMPION: first}

    # 2. A deliberately weakened candidate (trained on shuffled labels) never replaces it.
    real = load_training_set(settings)
    rng = np.random.default_rng(0)
    shuffled = real.frame.assign(is_fraud=rng.permutation(real.frame["is_fraud"].to_numpy()))
    weak, _ = _register(settings, dataclasses.replace(real, frame=shuffled))
    # Floors off: the comparison with the champion alone must stop it.
    no_floors = settings.model_copy(update={"promotion_min_ap": 0.0, "promotion_min_roc_auc": 0.0})
    decision = run_gate(no_floors)
    assert decision.decision == KEPT
    assert decision.challenger["average_precision"] < decision.champion["average_precision"]
    assert _aliases(client, name) == {CHALLENGER: weak, CHAMPION: first}
    tags = client.get_model_version(name, weak).tags
    assert tags["gate_decision"] == KEPT
    assert tags["gate_reason"].startswith("does not beat the champion by the margin")
    assert tags["gate_champion_version"] == first

    # 3. Manual approval mode: a passing challenger waits for the explicit command.
    manual = settings.model_copy(update={"promotion_manual": True, "promotion_ap_margin": -1.0})
    # The first candidate registered again: it passes the gate (margin -1) with identical scores.
    splits = make_splits(real.frame, settings)
    again = Evaluation(
        splits.test,
        {"xgboost": evaluate_model(candidate.model_uri, splits.test_frame)},
        {},
        "xgboost",
        real.version,
    )
    third = register_candidates([candidate], again, manual)["xgboost"]
    assert run_gate(manual).decision == AWAITING
    assert _aliases(client, name)[CHAMPION] == first
    promote(manual, third)
    assert _aliases(client, name)[CHAMPION] == third

    # 4. Rollback returns to the champion it replaced; listing shows every version.
    assert rollback(settings) == first
    assert _aliases(client, name)[CHAMPION] == first
    rows = {r["version"]: r for r in list_versions(settings)}
    assert set(rows) == {first, weak, third}
    assert rows[first]["aliases"] == [CHAMPION]
    assert rows[weak]["gate_decision"] == KEPT
    assert float(rows[first]["average_precision"]) > float(rows[weak]["average_precision"])
    with pytest.raises(LookupError, match="replaced no earlier champion"):
        rollback(settings)

    # 5. The same registry through the CLI humans use.
    monkeypatch.setenv("FRAUDOPS_HOME", str(settings.home))
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", postgres_dsn)
    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()[1:4]}
    assert "champion" in lines[first]
    assert "challenger" in lines[third]
    assert f"v{weak} gate: does not beat the champion" in listed.output
    promoted = CliRunner().invoke(app, ["promote", third, "--reason", "reviewed"])
    assert promoted.exit_code == 0
    assert _aliases(client, name)[CHAMPION] == third
    assert CliRunner().invoke(app, ["rollback"]).exit_code == 0
    assert _aliases(client, name)[CHAMPION] == first
    assert champion_summary(settings).startswith(f"champion v{first} (xgboost): test AP")
