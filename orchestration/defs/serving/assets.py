"""Serving assets: the daily batch scores of the champion."""

import dagster as dg

from orchestration.defs.dbt.assets import CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART
from orchestration.defs.lakehouse.assets import RAW_TRANSACTIONS
from orchestration.partitions import partition_days
from orchestration.resources import SettingsResource
from serving.batch import write_batch_scores

GROUP = "serving"
BATCH_SCORES = dg.AssetKey([GROUP, "batch_scores"])
# The day's transactions and the marts' as-of features they are scored with.
DEPS = [RAW_TRANSACTIONS, CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART]


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The serving assets over ``partitions``."""

    @dg.asset(
        key=BATCH_SCORES,
        group_name=GROUP,
        kinds={"delta", "mlflow", "python"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=DEPS,
        description=(
            "Each day's transactions scored by the registry's champion with the marts' "
            "as-of features (serving/batch.py); one Delta commit per run."
        ),
    )
    def batch_scores(context: dg.AssetExecutionContext, settings: SettingsResource):
        report = write_batch_scores(settings.get(), partition_days(context))
        context.log.info(
            f"scored {report['rows']:,} transactions with version {report['model_version']}"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report["rows"],
                "features_missing": report["features_missing"],
                "model_version": report["model_version"],
                "delta_version": report["table_version"],
                "table_uri": dg.MetadataValue.path(report["uri"]),
            }
        )

    return [batch_scores]
