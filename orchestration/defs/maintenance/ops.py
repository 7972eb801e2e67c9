"""The maintenance job: one op that compacts and vacuums the platform's Delta tables.

Housekeeping keeps no data product up to date, so it is an op job rather than an asset: an
asset would put a node in the lineage that nothing depends on, and its "materialization"
would be a side effect on every other table.
"""

import dagster as dg

from lakehouse.maintenance import MaintenanceReport, compact_and_vacuum
from orchestration.resources import SettingsResource

MAINTENANCE_JOB = "maintenance"


def report_metadata(report: MaintenanceReport) -> dict[str, dg.MetadataValue]:
    """The run's metadata: totals, and files before/after and bytes removed per table."""
    rows = [
        "| table | files before | files after | live before | live after | bytes removed |",
        "|---|---|---|---|---|---|",
        *(
            f"| {t.table} | {t.files_before} | {t.files_after} | {t.live_files_before} "
            f"| {t.live_files_after} | {t.bytes_removed:,} |"
            for t in report.tables
        ),
    ]
    per_table = {
        t.table: dg.MetadataValue.json(
            {
                "files_before": t.files_before,
                "files_after": t.files_after,
                "live_files_before": t.live_files_before,
                "live_files_after": t.live_files_after,
                "files_compacted": t.files_compacted,
                "files_written": t.files_written,
                "files_vacuumed": t.files_vacuumed,
                "bytes_removed": t.bytes_removed,
                "delta_version": t.version,
                "skipped": t.skipped,
            }
        )
        for t in report.tables
    }
    return {
        "retention_hours": dg.MetadataValue.int(report.retention_hours),
        "tables": dg.MetadataValue.int(len(report.tables)),
        "files_before": dg.MetadataValue.int(report.files_before),
        "files_after": dg.MetadataValue.int(report.files_after),
        "bytes_removed": dg.MetadataValue.int(report.bytes_removed),
        "missing": dg.MetadataValue.text(", ".join(report.missing) or "none"),
        "report": dg.MetadataValue.md("\n".join(rows)),
        **per_table,
    }


@dg.op(
    description=(
        "Compact the small files of every platform Delta table (delta-rs optimize, default "
        "target size), then vacuum the files older than FRAUDOPS_VACUUM_RETENTION_HOURS."
    ),
)
def compact_and_vacuum_tables(
    context: dg.OpExecutionContext, settings: SettingsResource
) -> dg.Output[None]:
    """Run :func:`lakehouse.maintenance.compact_and_vacuum` and report it as metadata."""
    report = compact_and_vacuum(settings.get())
    for table in report.tables:
        if table.skipped:
            context.log.warning(f"{table.table}: {table.skipped}")
    context.log.info(
        f"{len(report.tables)} tables: {report.files_before} -> {report.files_after} files, "
        f"{report.bytes_removed:,} bytes removed (retention {report.retention_hours} h)"
    )
    return dg.Output(None, metadata=report_metadata(report))


def build_maintenance_job() -> dg.JobDefinition:
    """``maintenance``: compaction and vacuum of every table, one op."""

    @dg.job(
        name=MAINTENANCE_JOB,
        description=(
            "Compact and vacuum every Delta table of the platform; versions superseded longer "
            "ago than FRAUDOPS_VACUUM_RETENTION_HOURS can no longer be read afterwards."
        ),
    )
    def maintenance() -> None:
        compact_and_vacuum_tables()

    return maintenance
