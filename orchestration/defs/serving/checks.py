"""Checks of the batch scores: every score a probability, every transaction of the day scored."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow.compute as pc

from fraudops.catalog import BATCH_SCORES, RAW_TRANSACTIONS
from fraudops.settings import Settings
from lakehouse import delta

SCORE_RANGE = "scores_within_0_1"
ROW_COUNT = "one_score_per_transaction"


def batch_score_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks the batch scores report with every materialization."""
    return [
        dg.AssetCheckSpec(
            SCORE_RANGE,
            asset=key,
            description="Every score of the written days is a probability: not null, in [0, 1].",
        ),
        dg.AssetCheckSpec(
            ROW_COUNT,
            asset=key,
            description=(
                "Each written day holds as many scores as lakehouse/raw_transactions holds "
                "transactions for it."
            ),
        ),
    ]


def batch_score_check_results(settings: Settings, days: list[dt.date]) -> list[dg.AssetCheckResult]:
    """Evaluate the batch-score checks on what the table holds for ``days`` now."""
    options = settings.storage_options
    scores = delta.read_table(
        BATCH_SCORES.uri(settings), ["score"], [("tx_date", "in", days)], options
    ).column("score")
    outside = int(pc.sum(pc.or_kleene(pc.less(scores, 0.0), pc.greater(scores, 1.0))).as_py() or 0)
    nulls = scores.null_count
    scored = delta.partition_row_counts(BATCH_SCORES.uri(settings), "tx_date", options)
    raw = delta.partition_row_counts(RAW_TRANSACTIONS.uri(settings), "tx_date", options)
    mismatched = {
        day.isoformat(): {"scores": scored.get(day, 0), "transactions": raw.get(day, 0)}
        for day in days
        if scored.get(day, 0) != raw.get(day, 0)
    }
    return [
        dg.AssetCheckResult(
            check_name=SCORE_RANGE,
            passed=outside == 0 and nulls == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{outside:,} scores outside [0, 1], {nulls:,} null",
            metadata={
                "rows_checked": len(scores),
                "outside_0_1": outside,
                "null_scores": nulls,
                "min_score": pc.min(scores).as_py(),
                "max_score": pc.max(scores).as_py(),
            },
        ),
        dg.AssetCheckResult(
            check_name=ROW_COUNT,
            passed=not mismatched,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                "every transaction scored once"
                if not mismatched
                else f"days whose scores differ from their transactions: {sorted(mismatched)}"
            ),
            metadata={
                "days_checked": len(days),
                "mismatched_days": dg.MetadataValue.json(mismatched),
            },
        ),
    ]
