"""The skew check: online values equal the offline point-in-time values for the same as-of."""

import dagster as dg

from features import store as feature_store
from orchestration.resources import SettingsResource

SKEW_CHECK = "online_matches_offline"
SAMPLE_SIZE = 200


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
