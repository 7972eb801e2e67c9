"""Checks of the feature store domain: online/offline skew, and the training set's quality."""

import dagster as dg
import pandas as pd

from features import store as feature_store
from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import Settings
from orchestration.resources import SettingsResource

SKEW_CHECK = "online_matches_offline"
SAMPLE_SIZE = 200
TRAINING_ROWS = "training_set_row_count"
TRAINING_BALANCE = "training_set_class_balance"
TRAINING_NULLS = "training_set_inputs_not_null"


def build_checks(asset: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    """The online/offline skew check of ``asset`` (the online features)."""

    @dg.asset_check(
        asset=asset,
        name=SKEW_CHECK,
        description=(
            f"For {SAMPLE_SIZE} random entities per view at the latest materialized as-of, the "
            "online row is that as-of's row and equals get_historical_features at that time."
        ),
    )
    def online_matches_offline(settings: SettingsResource) -> dg.AssetCheckResult:
        config = settings.get()
        report = feature_store.compare_online_offline(
            feature_store.open_store(config), config, sample_size=SAMPLE_SIZE
        )
        return dg.AssetCheckResult(
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                "online and offline agree"
                if report.passed
                else f"features differing online vs offline: {sorted(report.mismatches)}"
            ),
            metadata={
                "as_of": str(report.as_of),
                "sample_seed": report.seed,
                "entities_compared": report.entities_compared,
                "mismatches_by_feature": dg.MetadataValue.json(report.mismatches),
                "examples": dg.MetadataValue.json(report.examples[:10]),
            },
        )

    return [online_matches_offline]


def training_set_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The training set's checks; blocking, so no candidate trains on a set that fails one."""
    return [
        dg.AssetCheckSpec(
            TRAINING_ROWS,
            asset=key,
            blocking=True,
            description="At least FRAUDOPS_TRAINING_MIN_ROWS labelled transactions.",
        ),
        dg.AssetCheckSpec(
            TRAINING_BALANCE,
            asset=key,
            blocking=True,
            description=(
                "Both classes present, the fraud share within FRAUDOPS_TRAINING_MIN_FRAUD_SHARE "
                "and FRAUDOPS_TRAINING_MAX_FRAUD_SHARE (a broken label join shows here)."
            ),
        ),
        dg.AssetCheckSpec(
            TRAINING_NULLS,
            asset=key,
            blocking=True,
            description="No null among the 15 model inputs and the label (fills are explicit).",
        ),
    ]


def training_set_check_results(
    frame: pd.DataFrame, settings: Settings
) -> list[dg.AssetCheckResult]:
    """Evaluate the training set's checks on the frame just written."""
    rows = len(frame)
    frauds = int(frame["is_fraud"].sum()) if rows else 0
    share = frauds / rows if rows else 0.0
    low, high = settings.training_min_fraud_share, settings.training_max_fraud_share
    nulls = {c: int(n) for c, n in frame[[*FEATURE_COLUMNS, "is_fraud"]].isna().sum().items() if n}
    return [
        dg.AssetCheckResult(
            check_name=TRAINING_ROWS,
            passed=rows >= settings.training_min_rows,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{rows:,} rows (minimum {settings.training_min_rows:,})",
            metadata={"rows": rows, "min_rows": settings.training_min_rows},
        ),
        dg.AssetCheckResult(
            check_name=TRAINING_BALANCE,
            passed=0 < frauds < rows and low <= share <= high,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"fraud share {share:.4%} (allowed {low:.4%} to {high:.2%})",
            metadata={
                "frauds": frauds,
                "genuine": rows - frauds,
                "fraud_share": round(share, 6),
                "min_fraud_share": low,
                "max_fraud_share": high,
            },
        ),
        dg.AssetCheckResult(
            check_name=TRAINING_NULLS,
            passed=not nulls,
            severity=dg.AssetCheckSeverity.ERROR,
            description=("no null input" if not nulls else f"null values in {sorted(nulls)}"),
            metadata={"null_counts": dg.MetadataValue.json(nulls)},
        ),
    ]
