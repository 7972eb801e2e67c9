"""Retraining assets: candidates, their evaluation, registration and the champion gate.

Thin wrappers over ``ml.pipeline``, ``ml.registry`` and ``ml.gate``; metadata links the MLflow
runs, shows the key metrics as Markdown tables and what each step cost. The long steps report
their progress to the run's log.
"""

import time
from collections.abc import Iterator, Mapping

import dagster as dg

from fraudops.settings import Settings
from ml import tracking
from ml.backtest import FIGURES, Backtest
from ml.cost import Cost, CostMeter, total
from ml.dataset import load_training_set
from ml.gate import run_gate
from ml.pipeline import KEY_METRICS, Candidate, Evaluation, evaluate_candidates, train_candidate
from ml.registry import register_candidates
from orchestration.defs.features.assets import TRAINING_SET
from orchestration.defs.lakehouse.metadata import code_version, markdown_table
from orchestration.defs.training.checks import candidate_check_result, candidate_check_spec
from orchestration.defs.training.fallback import FALLBACK_MODEL, fallback_model
from orchestration.resources import SettingsResource

GROUP = "ml"
XGBOOST_CANDIDATE = dg.AssetKey(["ml", "xgboost_candidate"])
TORCH_CANDIDATE = dg.AssetKey(["ml", "torch_candidate"])
MODEL_EVALUATION = dg.AssetKey(["ml", "model_evaluation"])
REGISTERED_MODEL = dg.AssetKey(["ml", "registered_model"])
CHAMPION = dg.AssetKey(["ml", "champion"])
ML_KEYS = [
    XGBOOST_CANDIDATE,
    TORCH_CANDIDATE,
    MODEL_EVALUATION,
    REGISTERED_MODEL,
    CHAMPION,
    FALLBACK_MODEL,
]
# The code of the retraining steps: every asset of the domain follows the ml package.
ML_CODE = ("ml",)
# Extra figures of the evaluation tables, after the key metrics.
TABLE_METRICS = ("latency_p50_ms", "latency_p99_ms", "rows", "fraud_rate")


def _figures(metrics: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": round(metrics[k], 4) for k in KEY_METRICS if k in metrics}


def _cost_metadata(cost: Cost | None, prefix: str = "cost_") -> dict[str, float]:
    return cost.as_metrics(prefix) if cost is not None else {}


def _candidate_metadata(settings: Settings, candidate: Candidate) -> dict[str, object]:
    cost = candidate.cost
    rows = [
        ("validation AP", round(candidate.validation_ap, 4)),
        ("final fit (s)", round(candidate.train_seconds, 2)),
        ("training set version", candidate.data_version),
    ]
    if cost is not None:
        rows += [
            ("step wall time (s)", round(cost.wall_seconds, 1)),
            ("step CPU time (s)", round(cost.cpu_seconds, 1)),
            ("peak memory (MiB)", round(cost.peak_rss_bytes / 2**20)),
            ("training-set rows", cost.rows),
        ]
    return {
        "mlflow_run": dg.MetadataValue.url(tracking.run_url(settings, candidate.run_id)),
        "mlflow_run_id": candidate.run_id,
        "model_uri": candidate.model_uri,
        "validation_ap": round(candidate.validation_ap, 4),
        "train_seconds": round(candidate.train_seconds, 2),
        "training_set_version": candidate.data_version,
        "summary": dg.MetadataValue.md(markdown_table([candidate.kind, "value"], rows)),
        **_cost_metadata(cost),
    }


def _candidate_asset(
    key: dg.AssetKey, kind: str, kinds: set[str], version: str
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[TRAINING_SET],
        group_name=GROUP,
        kinds=kinds,
        code_version=version,
        check_specs=[candidate_check_spec(key)],
        description=(
            f"A {kind} candidate trained on the newest training window of features/training_set "
            "(scaling fitted on that window, inside the model), logged as an MLflow run with "
            "its cost."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        config = settings.get()
        candidate = train_candidate(kind, config, progress=context.log.info)
        context.log.info(f"{kind} candidate: validation AP {candidate.validation_ap:.4f}")
        yield dg.Output(candidate, metadata=_candidate_metadata(config, candidate))
        yield candidate_check_result(candidate, config)

    return _asset


def evaluation_tables(evaluation: Evaluation) -> dict[str, str]:
    """One Markdown table per candidate: its test-window figures next to the baseline's."""
    tables = {}
    for kind, metrics in evaluation.metrics.items():
        names = [*KEY_METRICS, *(k for k in TABLE_METRICS if k in metrics)]
        names += sorted(k for k in metrics if k.startswith("recall_"))
        rows = [
            (name, float(metrics[name]), float(evaluation.baseline.get(name, float("nan"))))
            for name in names
        ]
        tables[kind] = markdown_table(["metric", kind, "amount rule"], rows)
    return tables


def _model_evaluation(version: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=MODEL_EVALUATION,
        ins={
            "xgboost": dg.AssetIn(XGBOOST_CANDIDATE),
            "torch": dg.AssetIn(TORCH_CANDIDATE),
        },
        group_name=GROUP,
        kinds={"mlflow", "python"},
        code_version=version,
        description=(
            "Both candidates and the amount-rule baseline on the test window (used once): ROC "
            "AUC, AP, card precision@100, calibration, slice recall, latency; plots go to the "
            "runs, a table per candidate to the metadata."
        ),
    )
    def model_evaluation(
        context: dg.AssetExecutionContext,
        settings: SettingsResource,
        xgboost: Candidate,
        torch: Candidate,
    ) -> dg.Output:
        """Evaluate both candidates and the baseline on the same test window."""
        config = settings.get()
        evaluation = evaluate_candidates([xgboost, torch], config, progress=context.log.info)
        metadata: dict[str, object] = {
            "selected": evaluation.selected,
            "test_window": (
                f"{evaluation.test_window.test_start}..{evaluation.test_window.test_end}"
            ),
            "training_set_version": evaluation.data_version,
            **_figures(evaluation.baseline, "baseline_"),
            **_cost_metadata(evaluation.cost),
        }
        for kind, metrics in evaluation.metrics.items():
            metadata.update(_figures(metrics, f"{kind}_"))
            metadata[f"{kind}_latency_p99_ms"] = round(metrics["latency_p99_ms"], 3)
        for kind, table in evaluation_tables(evaluation).items():
            metadata[f"metrics_{kind}"] = dg.MetadataValue.md(table)
        return dg.Output(evaluation, metadata=metadata)

    return model_evaluation


def _registered_model(version: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=REGISTERED_MODEL,
        ins={
            "xgboost": dg.AssetIn(XGBOOST_CANDIDATE),
            "torch": dg.AssetIn(TORCH_CANDIDATE),
            "evaluation": dg.AssetIn(MODEL_EVALUATION),
        },
        group_name=GROUP,
        kinds={"mlflow"},
        code_version=version,
        description="Every candidate registered as a version of the model; alias challenger.",
    )
    def registered_model(
        settings: SettingsResource, xgboost: Candidate, torch: Candidate, evaluation: Evaluation
    ) -> dg.Output:
        """Register the candidates; the one chosen on validation AP becomes the challenger."""
        config = settings.get()
        meter = CostMeter()
        with meter:
            versions = register_candidates([xgboost, torch], evaluation, config)
        challenger = versions[evaluation.selected]
        return dg.Output(
            challenger,
            metadata={
                "model": config.model_name,
                "challenger_version": challenger,
                "versions": dg.MetadataValue.json(versions),
                **_cost_metadata(meter.cost),
            },
        )

    return registered_model


def run_step_costs(context: dg.AssetExecutionContext) -> dict[str, Cost]:
    """The cost each asset of this run recorded so far (``cost_*`` metadata), by asset."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    costs = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        if "cost_wall_seconds" in metadata:
            costs[materialization.asset_key.to_user_string()] = Cost.from_metrics(metadata)
    return costs


def run_elapsed(context: dg.AssetExecutionContext) -> float | None:
    """Seconds since this run started (None when the instance did not record the start)."""
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    return time.time() - started if started else None


def _cost_table(costs: Mapping[str, Cost], retraining: Cost) -> str:
    rows = [
        (
            step,
            round(c.wall_seconds, 1),
            round(c.cpu_seconds, 1),
            round(c.peak_rss_bytes / 2**20),
            c.rows,
        )
        for step, c in [*costs.items(), ("whole retraining", retraining)]
    ]
    return markdown_table(["step", "wall (s)", "CPU (s)", "peak memory (MiB)", "rows"], rows)


def _backtest_table(result: Backtest) -> str:
    rows = [(k, result.challenger[k], result.champion[k]) for k in FIGURES]
    rows += [
        ("rows", result.rows, result.rows),
        ("frauds", result.frauds, result.frauds),
        ("decisions changed", result.decision_changes, ""),
    ]
    header = ["figure", f"challenger v{result.challenger_version}", "champion (logged)"]
    return markdown_table(header, rows)


def _champion(version: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=CHAMPION,
        ins={
            "evaluation": dg.AssetIn(MODEL_EVALUATION),
            "challenger": dg.AssetIn(REGISTERED_MODEL),
        },
        group_name=GROUP,
        kinds={"mlflow"},
        code_version=version,
        description=(
            "Promotion gate: the champion alias moves to the challenger only if it beats the "
            "champion's AP by the margin on the newest test window, meets the floors and does "
            "not do clearly worse on the backtest of logged traffic. Records the retraining's "
            "cost (every step of the run so far) here and on the challenger's MLflow run."
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
        meter = CostMeter()
        with meter:
            data = load_training_set(config, version=evaluation.data_version)
            meter.rows = len(data.frame)
            decision = run_gate(config, data, progress=context.log.info)
        context.log.info(f"gate: {decision.decision} ({decision.reason})")
        steps = {**run_step_costs(context), CHAMPION.to_user_string(): meter.cost}
        retraining = total(steps.values(), run_elapsed(context))
        run_id = tracking.version_run_id(config, challenger)
        if run_id:
            tracking.configure(config)
            tracking.log_cost(run_id, retraining, prefix="retraining_")
        context.log.info(f"retraining so far: {retraining.summary()}")
        backtest = decision.backtest
        return dg.MaterializeResult(
            metadata={
                "decision": decision.decision,
                "reason": decision.reason,
                "challenger_version": challenger,
                "champion_version_before": decision.champion_version or "none",
                **_figures(decision.challenger, "challenger_"),
                **(_figures(decision.champion, "champion_") if decision.champion else {}),
                "backtest": dg.MetadataValue.md(
                    _backtest_table(backtest) if backtest else decision.backtest_note
                ),
                **(
                    {"backtest_ap_gain": round(backtest.ap_gain, 4)} if backtest is not None else {}
                ),
                "retraining_cost": dg.MetadataValue.md(_cost_table(steps, retraining)),
                **_cost_metadata(meter.cost),
                **_cost_metadata(retraining, "retraining_"),
            }
        )

    return champion


def build_assets() -> list[dg.AssetsDefinition]:
    """The retraining assets (their code version follows the ml package's source)."""
    version = code_version(*ML_CODE)
    return [
        _candidate_asset(XGBOOST_CANDIDATE, "xgboost", {"xgboost", "mlflow"}, version),
        _candidate_asset(TORCH_CANDIDATE, "torch", {"pytorch", "mlflow"}, version),
        _model_evaluation(version),
        _registered_model(version),
        _champion(version),
        fallback_model,
    ]
