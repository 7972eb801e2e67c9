"""Raw lakehouse assets: master data and the two daily feeds, validated into Delta."""

import dagster as dg

from lakehouse.ingestion import IngestionReport, Lakehouse, ingest_feed, ingest_master_data
from orchestration.defs.lakehouse.checks import feed_check_results, feed_check_specs
from orchestration.partitions import partition_days
from orchestration.resources import SettingsResource

GROUP = "lakehouse"
KINDS = {"delta", "python"}


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


def _master_asset(key: dg.AssetKey, name: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds=KINDS,
        description=f"Master data of {name} from the source system, as a Delta table.",
    )
    def _asset(settings: SettingsResource) -> dg.MaterializeResult:
        rows, version = ingest_master_data(Lakehouse(settings.get()), name)
        return dg.MaterializeResult(metadata={"dagster/row_count": rows, "delta_version": version})

    return _asset


def _feed_metadata(lakehouse: Lakehouse, report: IngestionReport) -> dict[str, object]:
    return {
        "dagster/row_count": report.rows,
        "quarantined_rows": report.quarantined,
        "quarantine_ratio": round(report.quarantine_ratio, 6),
        "delta_version": report.table_version,
        "quarantine_delta_version": report.quarantine_version,
        "days": len(report.days),
        "table_uri": dg.MetadataValue.path(lakehouse.raw_uri(report.feed)),
    }


def _feed_asset(key: dg.AssetKey, feed: str, partitions: dg.PartitionsDefinition):
    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds=KINDS,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[RAW_CUSTOMERS, RAW_TERMINALS],
        check_specs=feed_check_specs(key),
        description=(
            f"The {feed} feed, validated row by row; rejected rows go to quarantine/{feed} "
            "with their reason. A run over many days writes one Delta commit."
        ),
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
        yield dg.MaterializeResult(metadata=_feed_metadata(lakehouse, report))
        yield from feed_check_results(lakehouse, report)

    return _asset


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The raw lakehouse assets over ``partitions``, and the ingestion log they write."""
    return [
        INGESTION_LOG_SPEC,
        _master_asset(RAW_CUSTOMERS, "customers"),
        _master_asset(RAW_TERMINALS, "terminals"),
        _feed_asset(RAW_TRANSACTIONS, "transactions", partitions),
        _feed_asset(RAW_FRAUD_REPORTS, "fraud_reports", partitions),
    ]
