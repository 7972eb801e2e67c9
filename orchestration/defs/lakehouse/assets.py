"""Raw lakehouse assets: master data and the two daily feeds, validated into Delta."""

import dagster as dg

from lakehouse import delta
from lakehouse.ingestion import (
    PARTITION_COLUMNS,
    RAW_SCHEMAS,
    IngestionReport,
    Lakehouse,
    ingest_feed,
    ingest_master_data,
)
from orchestration.defs.lakehouse.checks import feed_check_results, feed_check_specs
from orchestration.defs.lakehouse.metadata import code_version, column_schema, delta_column_schema
from orchestration.partitions import partition_days
from orchestration.resources import SettingsResource

GROUP = "lakehouse"
KINDS = {"delta", "python"}
# The code that lands, validates and writes the raw tables (the source system is external).
INGESTION_CODE = ("lakehouse",)


class IngestConfig(dg.Config):
    """Run configuration of a feed ingestion."""

    force: bool = False  # write days the volume guard would refuse (a real drop in volume)


def raw_key(table: str) -> dg.AssetKey:
    """The asset key of the raw Delta table ``raw/<table>`` (also dbt's source ``table``)."""
    return dg.AssetKey([GROUP, f"raw_{table}"])


RAW_TRANSACTIONS = raw_key("transactions")
RAW_FRAUD_REPORTS = raw_key("fraud_reports")
RAW_CUSTOMERS = raw_key("customers")
RAW_TERMINALS = raw_key("terminals")
INGESTION_LOG = dg.AssetKey([GROUP, "ingestion_log"])
# Written by the two feed assets (a row per day started and completed), read by dbt's
# completeness tests: declared so the graph shows where it comes from.
INGESTION_LOG_SPEC = dg.AssetSpec(
    INGESTION_LOG,
    group_name=GROUP,
    kinds={"delta"},
    description=(
        "ops/ingestion_log: which days of which feed started and completed ingestion, written "
        "by lakehouse/raw_transactions and lakehouse/raw_fraud_reports."
    ),
)


def _master_asset(key: dg.AssetKey, name: str, version: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds=KINDS,
        code_version=version,
        description=f"Master data of {name} from the source system, as a Delta table.",
    )
    def _asset(settings: SettingsResource) -> dg.MaterializeResult:
        lakehouse = Lakehouse(settings.get())
        rows, table_version = ingest_master_data(lakehouse, name)
        uri = lakehouse.raw_uri(name)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": delta_column_schema(uri, lakehouse.storage_options),
                "delta_version": table_version,
                "table_uri": dg.MetadataValue.path(uri),
            }
        )

    return _asset


def _feed_metadata(lakehouse: Lakehouse, report: IngestionReport) -> dict[str, object]:
    """What every partition of the run shares: the run's totals and the Delta versions."""
    return {
        "run_rows": report.rows,
        "run_quarantined_rows": report.quarantined,
        "quarantine_ratio": round(report.quarantine_ratio, 6),
        "delta_version": report.table_version,
        "quarantine_delta_version": report.quarantine_version,
        "days": len(report.days),
        "table_uri": dg.MetadataValue.path(lakehouse.raw_uri(report.feed)),
    }


def partition_metadata(lakehouse: Lakehouse, report: IngestionReport) -> dict[str, dict]:
    """Per written day (partition key): its own row and quarantine counts, from the Delta log."""
    feed = report.feed
    raw = delta.partition_row_counts(
        lakehouse.raw_uri(feed), PARTITION_COLUMNS[feed], lakehouse.storage_options
    )
    quarantined = delta.partition_row_counts(
        lakehouse.quarantine_uri(feed), "partition_date", lakehouse.storage_options
    )
    return {
        day.isoformat(): {
            "dagster/row_count": raw.get(day, 0),
            "quarantined_rows": quarantined.get(day, 0),
        }
        for day in report.days
    }


def _feed_asset(
    key: dg.AssetKey, feed: str, partitions: dg.PartitionsDefinition, version: str
) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        key,
        group_name=GROUP,
        kinds=KINDS,
        deps=[RAW_CUSTOMERS, RAW_TERMINALS],
        code_version=version,
        metadata={"dagster/column_schema": column_schema(RAW_SCHEMAS[feed])},
        description=(
            f"The {feed} feed, validated row by row; rejected rows go to quarantine/{feed} "
            "with their reason. A run over many days writes one Delta commit; each day's "
            "materialization carries that day's row count."
        ),
    )

    # A multi-asset of one: its backfill policy is stable API, where @asset's is still beta.
    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=feed_check_specs(key),
    )
    def _asset(context: dg.AssetExecutionContext, config: IngestConfig, settings: SettingsResource):
        lakehouse = Lakehouse(settings.get())
        report = ingest_feed(
            lakehouse, feed, partition_days(context), progress=context.log.info, force=config.force
        )
        context.log.info(
            f"{feed}: {report.rows:,} rows, {report.quarantined:,} quarantined "
            f"({report.reasons or 'no rejections'}), Delta version {report.table_version}"
        )
        # One materialization per partition key: each gets its own day's counts.
        for partition_key, metadata in partition_metadata(lakehouse, report).items():
            if partition_key in context.partition_keys:
                context.add_asset_metadata(metadata, asset_key=key, partition_key=partition_key)
        yield dg.MaterializeResult(asset_key=key, metadata=_feed_metadata(lakehouse, report))
        yield from feed_check_results(lakehouse, report)

    return _asset


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The raw lakehouse assets over ``partitions``, and the ingestion log they write."""
    version = code_version(*INGESTION_CODE)
    return [
        INGESTION_LOG_SPEC,
        _master_asset(RAW_CUSTOMERS, "customers", version),
        _master_asset(RAW_TERMINALS, "terminals", version),
        _feed_asset(RAW_TRANSACTIONS, "transactions", partitions, version),
        _feed_asset(RAW_FRAUD_REPORTS, "fraud_reports", partitions, version),
    ]
