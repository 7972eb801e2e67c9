"""Housekeeping of the Delta tables: compact small files, then vacuum the unreferenced ones.

Every commit of a table adds at least one file (a prediction-log flush, a day's partition, a
dbt rebuild), and a replaced file stays on storage so that older versions remain readable.
:func:`compact_and_vacuum` rewrites each partition's small files into few large ones (at
delta-rs's default target size), then deletes the files that no version within the retention
window needs, so a version superseded longer ago than the window can no longer be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from fraudops.catalog import ALL_TABLES, Table
from fraudops.settings import Settings
from lakehouse import delta


@dataclass(frozen=True)
class TableMaintenance:
    """What compaction and vacuum did to one table."""

    table: str
    uri: str
    files_before: int
    files_after: int
    live_files_before: int
    live_files_after: int
    files_compacted: int
    files_written: int
    files_vacuumed: int
    bytes_removed: int
    version: int
    # Why compaction was skipped (a concurrent writer); vacuum still ran.
    skipped: str | None = None


@dataclass
class MaintenanceReport:
    """The result of :func:`compact_and_vacuum`, table by table."""

    retention_hours: int
    tables: list[TableMaintenance] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def bytes_removed(self) -> int:
        """Bytes deleted from storage over all tables."""
        return sum(t.bytes_removed for t in self.tables)

    @property
    def files_before(self) -> int:
        """Data files on storage over all tables, before maintenance."""
        return sum(t.files_before for t in self.tables)

    @property
    def files_after(self) -> int:
        """Data files on storage over all tables, after maintenance."""
        return sum(t.files_after for t in self.tables)


def data_files(uri: str, storage_options: dict[str, str] | None = None) -> dict[str, int]:
    """Size of every data file stored under the table (its log and hidden files excluded)."""
    fs = pafs.PyFileSystem(DeltaStorageHandler(uri, storage_options or None))
    listing = fs.get_file_info(pafs.FileSelector("", recursive=True))
    return {
        info.path: info.size or 0
        for info in listing
        if info.type == pafs.FileType.File
        # The log, checkpoints and staging folders start with "_" or "." (Delta's convention).
        and not any(part.startswith(("_", ".")) for part in info.path.split("/"))
    }


def maintain_table(
    uri: str,
    name: str,
    retention_hours: int,
    enforce_retention_duration: bool = True,
    storage_options: dict[str, str] | None = None,
) -> TableMaintenance:
    """Compact the table at ``uri``, then vacuum the files older than ``retention_hours``."""
    table = DeltaTable(uri, storage_options=storage_options or None)
    before = data_files(uri, storage_options)
    live_before = len(table.file_uris())
    skipped = None
    try:
        metrics = table.optimize.compact()
    except CommitFailedError as exc:
        # A writer replaced the same files meanwhile: its commit stands, compaction waits
        # for the next run.
        metrics, skipped = {}, f"compaction lost to a concurrent writer: {exc}"
    compacted = data_files(uri, storage_options)
    # Full mode also deletes files no commit ever referenced (a writer's failed commit), once
    # older than the retention; a file a version within the window needs is always kept.
    removed = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=enforce_retention_duration,
        full=True,
    )
    after = data_files(uri, storage_options)
    return TableMaintenance(
        table=name,
        uri=uri,
        files_before=len(before),
        files_after=len(after),
        live_files_before=live_before,
        live_files_after=len(table.file_uris()),
        files_compacted=int(metrics.get("numFilesRemoved", 0)),
        files_written=int(metrics.get("numFilesAdded", 0)),
        files_vacuumed=len(removed),
        bytes_removed=sum(compacted.get(path, 0) for path in removed),
        version=table.version(),
        skipped=skipped,
    )


def compact_and_vacuum(
    settings: Settings,
    tables: Sequence[Table] = ALL_TABLES,
    retention_hours: int | None = None,
    enforce_retention_duration: bool = True,
) -> MaintenanceReport:
    """Compact and vacuum every table of ``tables`` that exists; the others are listed missing.

    ``retention_hours`` defaults to ``FRAUDOPS_VACUUM_RETENTION_HOURS``. With
    ``enforce_retention_duration``, delta-rs refuses a retention below a table's
    ``delta.deletedFileRetentionDuration`` (7 days unless the table sets it).
    """
    hours = settings.vacuum_retention_hours if retention_hours is None else retention_hours
    report = MaintenanceReport(retention_hours=hours)
    options = settings.storage_options
    for table in tables:
        name = f"{table.layer}/{table.name}"
        uri = table.uri(settings)
        if not delta.table_exists(uri, options):
            report.missing.append(name)
            continue
        report.tables.append(maintain_table(uri, name, hours, enforce_retention_duration, options))
    return report
