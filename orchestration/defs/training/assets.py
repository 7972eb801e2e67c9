"""Retraining assets: candidates, their evaluation, registration and the champion gate.

Thin wrappers over ``ml.pipeline``, ``ml.registry`` and ``ml.gate``; metadata links the MLflow
runs and shows the key metrics.
"""

import dagster as dg

from fraudops.settings import Settings
from ml import tracking
from ml.dataset import load_training_set
from ml.gate import run_gate
from ml.pipeline import KEY_METRICS, Candidate, Evaluation, evaluate_candidates, train_candidate
from ml.registry import register_candidates
from orchestration.defs.features.assets import TRAINING_SET
from orchestration.resources import SettingsResource

GROUP = "ml"
XGBOOST_CANDIDATE = dg.AssetKey(["ml", "xgboost_candidate"])
TORCH_CANDIDATE = dg.AssetKey(["ml", "torch_candidate"])
MODEL_EVALUATION = dg.AssetKey(["ml", "model_evaluation"])
REGISTERED_MODEL = dg.AssetKey(["ml", "registered_model"])
CHAMPION = dg.AssetKey(["ml", "champion"])
ML_KEYS = [XGBOOST_CANDIDATE, TORCH_CANDIDATE, MODEL_EVALUATION, REGISTERED_MODEL, CHAMPION]


def _figures(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": round(metrics[k], 4) for k in KEY_METRICS if k in metrics}


def _candidate_metadata(settings: Settings, candidate: Candidate) -> dict[str, object]:
    return {
        "mlflow_run": dg.MetadataValue.url(tracking.run_url(settings, candidate.run_id)),
        "mlflow_run_id": candidate.run_id,
        "model_uri": candidate.model_uri,
        "validation_ap": round(candidate.validation_ap, 4),
        "train_seconds": round(candidate.train_seconds, 2),
        "training_set_version": candidate.data_version,
    }


def _candidate_asset(key: dg.AssetKey, kind: str, kinds: set[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[TRAINING_SET],
        group_name=GROUP,
        kinds=kinds,
        description=(
            f"A {kind} candidate trained on the newest training window of features/training_set "
            "(scaling fitted on that window, inside the model), logged as an MLflow run."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output:
        config = settings.get()
        candidate = train_candidate(kind, config)
        context.log.info(f"{kind} candidate: validation AP {candidate.validation_ap:.4f}")
        return dg.Output(candidate, metadata=_candidate_metadata(config, candidate))

    return _asset


xgboost_candidate = _candidate_asset(XGBOOST_CANDIDATE, "xgboost", {"xgboost", "mlflow"})
torch_candidate = _candidate_asset(TORCH_CANDIDATE, "torch", {"pytorch", "mlflow"})


@dg.asset(
    key=MODEL_EVALUATION,
    ins={
        "xgboost": dg.AssetIn(XGBOOST_CANDIDATE),
        "torch": dg.AssetIn(TORCH_CANDIDATE),
    },
    group_name=GROUP,
    kinds={"mlflow", "python"},
    description=(
        "Both candidates and the amount-rule baseline on the test window (used once): ROC AUC, "
        "AP, card precision@100, calibration, slice recall, latency; plots go to the runs."
    ),
)
def model_evaluation(settings: SettingsResource, xgboost: Candidate, torch: Candidate) -> dg.Output:
    """Evaluate both candidates and the baseline on the same test window."""
    config = settings.get()
    evaluation = evaluate_candidates([xgboost, torch], config)
    metadata: dict[str, object] = {
        "selected": evaluation.selected,
        "test_window": f"{evaluation.test_window.test_start}..{evaluation.test_window.test_end}",
        "training_set_version": evaluation.data_version,
        **_figures(evaluation.baseline, "baseline_"),
    }
    for kind, metrics in evaluation.metrics.items():
        metadata.update(_figures(metrics, f"{kind}_"))
        metadata[f"{kind}_latency_p99_ms"] = round(metrics["latency_p99_ms"], 3)
    return dg.Output(evaluation, metadata=metadata)


@dg.asset(
    key=REGISTERED_MODEL,
    ins={
        "xgboost": dg.AssetIn(XGBOOST_CANDIDATE),
        "torch": dg.AssetIn(TORCH_CANDIDATE),
        "evaluation": dg.AssetIn(MODEL_EVALUATION),
    },
    group_name=GROUP,
    kinds={"mlflow"},
    description="Every candidate registered as a version of the model; alias challenger.",
)
def registered_model(
    settings: SettingsResource, xgboost: Candidate, torch: Candidate, evaluation: Evaluation
) -> dg.Output:
    """Register the candidates; the one chosen on validation AP becomes the challenger."""
    config = settings.get()
    versions = register_candidates([xgboost, torch], evaluation, config)
    challenger = versions[evaluation.selected]
    return dg.Output(
        challenger,
        metadata={
            "model": config.model_name,
            "challenger_version": challenger,
            "versions": dg.MetadataValue.json(versions),
        },
    )


@dg.asset(
    key=CHAMPION,
    ins={"evaluation": dg.AssetIn(MODEL_EVALUATION), "challenger": dg.AssetIn(REGISTERED_MODEL)},
    group_name=GROUP,
    kinds={"mlflow"},
    description=(
        "Promotion gate: the champion alias moves to the challenger only if it beats the "
        "champion's AP by the margin on the newest test window and meets the floors."
    ),
)
def champion(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    evaluation: Evaluation,
    challenger: str,
) -> dg.MaterializeResult:
    """Run the promotion gate on the training-set version the candidates used."""
    config = settings.get()
    data = load_training_set(config, version=evaluation.data_version)
    decision = run_gate(config, data)
    context.log.info(f"gate: {decision.decision} ({decision.reason})")
    return dg.MaterializeResult(
        metadata={
            "decision": decision.decision,
            "reason": decision.reason,
            "challenger_version": challenger,
            "champion_version_before": decision.champion_version or "none",
            **_figures(decision.challenger, "challenger_"),
            **(_figures(decision.champion, "champion_") if decision.champion else {}),
        }
    )


def build_assets() -> list[dg.AssetsDefinition]:
    """The retraining assets."""
    return [xgboost_candidate, torch_candidate, model_evaluation, registered_model, champion]
