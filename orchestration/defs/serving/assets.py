"""Serving assets: the daily batch scores of the champion."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import numpy as np

from fraudops.catalog import BATCH_SCORES as BATCH_SCORES_TABLE
from fraudops.settings import Settings
from lakehouse import delta
from orchestration.defs.dbt.assets import CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART
from orchestration.defs.lakehouse.assets import RAW_TRANSACTIONS
from orchestration.defs.lakehouse.metadata import (
    code_version,
    column_schema,
    markdown_histogram,
    markdown_table,
)
from orchestration.defs.serving.checks import batch_score_check_results, batch_score_check_specs
from orchestration.defs.training.assets import CHAMPION
from orchestration.partitions import partition_days
from orchestration.resources import SettingsResource
from serving.batch import SCHEMA, write_batch_scores

GROUP = "serving"
BATCH_SCORES = dg.AssetKey([GROUP, "batch_scores"])
# The day's transactions, the marts' as-of features they are scored with, and the champion
# that scores them (the registry alias the gate moves).
DEPS = [RAW_TRANSACTIONS, CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART, CHAMPION]
# The code that turns a day into scores (the model itself is versioned by the registry).
SCORING_CODE = ("serving.batch", "serving.scoring", "serving.features", "serving.models")


def score_distribution(settings: Settings, days: list[dt.date]) -> dict[str, object]:
    """A Markdown histogram of the written days' scores and their decisions."""
    scored = delta.read_table(
        BATCH_SCORES_TABLE.uri(settings),
        ["score", "decision"],
        [("tx_date", "in", days)],
        settings.storage_options,
    ).to_pandas()
    decisions = scored["decision"].value_counts()
    shares = [
        (d, int(decisions.get(d, 0)), f"{decisions.get(d, 0) / max(len(scored), 1):.2%}")
        for d in ("approve", "review", "decline")
    ]
    scores = scored["score"].to_numpy(dtype="float64")
    return {
        "score_distribution": dg.MetadataValue.md(markdown_histogram(scores[~np.isnan(scores)])),
        "decisions": dg.MetadataValue.md(markdown_table(["decision", "rows", "share"], shares)),
        "mean_score": round(float(np.nanmean(scores)), 6) if len(scores) else 0.0,
    }


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The serving assets over ``partitions``."""
    spec = dg.AssetSpec(
        BATCH_SCORES,
        group_name=GROUP,
        kinds={"delta", "mlflow", "python"},
        deps=DEPS,
        code_version=code_version(*SCORING_CODE),
        metadata={"dagster/column_schema": column_schema(SCHEMA)},
        description=(
            "Each day's transactions scored by the registry's champion with the marts' "
            "as-of features (serving/batch.py); one Delta commit per run, each day's "
            "materialization with its own row count."
        ),
    )

    # A multi-asset of one: its backfill policy is stable API, where @asset's is still beta.
    @dg.multi_asset(
        name=BATCH_SCORES.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=batch_score_check_specs(BATCH_SCORES),
    )
    def batch_scores(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        config = settings.get()
        days = partition_days(context)
        context.log.info(f"scoring {len(days)} day(s) with the champion")
        report = write_batch_scores(config, days)
        context.log.info(
            f"scored {report['rows']:,} transactions with version {report['model_version']}"
        )
        per_day = delta.partition_row_counts(report["uri"], "tx_date", config.storage_options)
        for day in days:
            context.add_asset_metadata(
                {"dagster/row_count": per_day.get(day, 0)},
                asset_key=BATCH_SCORES,
                partition_key=day.isoformat(),
            )
        yield dg.MaterializeResult(
            asset_key=BATCH_SCORES,
            metadata={
                "run_rows": report["rows"],
                "features_missing": report["features_missing"],
                "model_version": report["model_version"],
                "delta_version": report["table_version"],
                "table_uri": dg.MetadataValue.path(report["uri"]),
                **score_distribution(config, days),
            },
        )
        yield from batch_score_check_results(config, days)

    return [batch_scores]
