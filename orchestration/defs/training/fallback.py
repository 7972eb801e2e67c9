"""The fallback-model asset: the request-time model of the retraining run, registered with it.

A thin wrapper over ``ml.fallback``: it trains on the training-set version the candidates
used, after the promotion gate, so the versions it tags include the champion of this run.
"""

import dagster as dg

from ml import tracking
from ml.dataset import load_training_set
from ml.fallback import build_fallback
from ml.pipeline import Evaluation
from orchestration.resources import SettingsResource

# The keys of orchestration/defs/training/assets.py, spelt out: that module lists this asset.
CHAMPION = dg.AssetKey(["ml", "champion"])
MODEL_EVALUATION = dg.AssetKey(["ml", "model_evaluation"])
FALLBACK_MODEL = dg.AssetKey(["ml", "fallback_model"])


@dg.asset(
    key=FALLBACK_MODEL,
    ins={"evaluation": dg.AssetIn(MODEL_EVALUATION)},
    deps=[CHAMPION],
    group_name="ml",
    kinds={"xgboost", "mlflow"},
    description=(
        "The fallback of the run's model versions: XGBoost on the request-time features only "
        "(entity features at their fill value), trained on the candidates' training window, "
        "registered as a version of <model_name>_fallback and named by the fallback_version "
        "tag of the versions trained on the same training set. The service scores degraded "
        "rows (online store down, unknown entity) with the champion's fallback."
    ),
)
def fallback_model(
    context: dg.AssetExecutionContext, settings: SettingsResource, evaluation: Evaluation
) -> dg.MaterializeResult:
    """Train and register the fallback model on the training set the candidates used."""
    config = settings.get()
    data = load_training_set(config, version=evaluation.data_version)
    trained, registered = build_fallback(config, data, progress=context.log.info)
    context.log.info(
        f"fallback {registered.name} v{registered.version}: test AP "
        f"{trained.metrics['average_precision']:.4f}, serves versions {registered.serves}"
    )
    return dg.MaterializeResult(
        metadata={
            "mlflow_run": dg.MetadataValue.url(tracking.run_url(config, trained.run_id)),
            "mlflow_run_id": trained.run_id,
            "model": registered.name,
            "fallback_version": registered.version,
            "serves_versions": dg.MetadataValue.json(registered.serves),
            "training_set_version": trained.data_version,
            "validation_ap": round(trained.validation_ap, 4),
            **{
                f"test_{k}": round(trained.metrics[k], 4)
                for k in ("average_precision", "roc_auc", "card_precision_at_100")
            },
            "baseline_average_precision": round(trained.baseline["average_precision"], 4),
        }
    )
