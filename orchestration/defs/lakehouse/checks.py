"""Data-quality checks reported with every raw feed materialization.

A failing check marks the data, not the run: downstream work goes on and the UI shows why.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pyarrow.compute as pc

from lakehouse import delta
from lakehouse.ingestion import PARTITION_COLUMNS, IngestionReport, Lakehouse
from lakehouse.volume import volume_report

QUARANTINE_RATE = "quarantine_rate_below_threshold"
UNIQUE_KEYS = "unique_transaction_ids"
VOLUME = "daily_volume_near_trailing_median"


def feed_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks every raw feed reports."""
    return [
        dg.AssetCheckSpec(
            QUARANTINE_RATE,
            asset=key,
            description="Share of quarantined rows stays below FRAUDOPS_QUARANTINE_FAIL_RATIO.",
        ),
        dg.AssetCheckSpec(
            UNIQUE_KEYS,
            asset=key,
            description="The written partitions hold each transaction id once.",
        ),
        dg.AssetCheckSpec(
            VOLUME,
            asset=key,
            description=(
                "Each written day holds at least FRAUDOPS_VOLUME_MIN_SHARE x the median of the "
                "FRAUDOPS_VOLUME_TRAILING_DAYS days before it (the guard refuses smaller days "
                "unless the run is forced, so this flags forced drops)."
            ),
        ),
    ]


def feed_check_results(
    lakehouse: Lakehouse, report: IngestionReport
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the feed checks against what was just written."""
    threshold = lakehouse.settings.quarantine_fail_ratio
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_RATE,
        passed=report.quarantine_ratio <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "quarantined_rows": report.quarantined,
            "quarantine_ratio": round(report.quarantine_ratio, 6),
            "threshold": threshold,
            "reasons": dg.MetadataValue.json(report.reasons),
        },
    )
    ids = delta.read_table(
        lakehouse.raw_uri(report.feed),
        ["transaction_id"],
        filters=[(PARTITION_COLUMNS[report.feed], "in", report.days)],
        storage_options=lakehouse.storage_options,
    ).column("transaction_id")
    duplicates = len(ids) - len(pc.unique(ids))
    yield dg.AssetCheckResult(
        check_name=UNIQUE_KEYS,
        passed=duplicates == 0,
        metadata={"rows_checked": len(ids), "duplicate_ids": duplicates},
    )
    min_share = lakehouse.settings.volume_min_share
    volumes = volume_report(lakehouse, report.feed, report.days)
    low = [row for row in volumes if row.share is not None and row.share < min_share]
    yield dg.AssetCheckResult(
        check_name=VOLUME,
        passed=not low,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "min_share": min_share,
            "lowest_share": min(
                (round(row.share, 3) for row in volumes if row.share is not None), default=None
            ),
            "days_below": [row.day.isoformat() for row in low],
            "forced_days": [drop.day.isoformat() for drop in report.forced],
        },
    )
