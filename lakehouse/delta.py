"""Delta Lake reads and writes through ``deltalake`` (no DuckDB extension, no Spark)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError


class PartitionConflictError(RuntimeError):
    """Another writer committed to the same partitions while a replace was in flight."""

    def __init__(self, uri: str, dates: Sequence[dt.date], cause: Exception) -> None:
        self.uri = uri
        self.dates = sorted(set(dates))
        listed = ", ".join(d.isoformat() for d in self.dates)
        super().__init__(
            f"a concurrent writer committed to {uri} (partitions {listed}) while this write "
            f"was in flight, so it was not applied ({cause}); run it again once the other "
            "writer has finished"
        )


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether a Delta table exists at ``uri``."""
    return DeltaTable.is_deltatable(uri, storage_options=storage_options or None)


def open_table(uri: str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at ``uri`` at its latest version, or None if there is none."""
    try:
        return DeltaTable(uri, storage_options=storage_options or None)
    except TableNotFoundError:
        return None


def replace_partitions(
    uri: str,
    data: pa.Table,
    partition_column: str,
    dates: Sequence[dt.date],
    storage_options: dict[str, str] | None = None,
) -> int:
    """Atomically replace the ``dates`` partitions of a date-partitioned table with ``data``.

    One Delta commit replaces every listed partition, also those for which ``data`` has no rows,
    so a re-run never duplicates and a shrinking partition loses its stale rows. Returns the
    new table version; raises :class:`PartitionConflictError` if a concurrent commit won.
    """
    if not dates:
        raise ValueError("replace_partitions needs at least one partition date")
    listed = ", ".join(f"'{d.isoformat()}'" for d in sorted(set(dates)))
    options = storage_options or None
    # The handle pins the snapshot this write is based on, so a commit by another writer in
    # between is detected by delta-rs as a conflict instead of being silently overwritten.
    table = open_table(uri, storage_options)
    try:
        if table is not None:
            write_deltalake(
                table,
                data,
                mode="overwrite",
                predicate=f"{partition_column} IN ({listed})",
                partition_by=[partition_column],
                storage_options=options,
            )
        else:
            write_deltalake(
                uri,
                data,
                mode="overwrite",
                partition_by=[partition_column],
                storage_options=options,
            )
    except CommitFailedError as exc:
        raise PartitionConflictError(uri, dates, exc) from exc
    return table.version() if table is not None else version(uri, storage_options)


def append(
    uri: str, data: pa.Table, storage_options: dict[str, str] | None = None, compact_above: int = 0
) -> None:
    """Append ``data`` to a small unpartitioned table, creating it if needed.

    With ``compact_above``, a table that has grown more data files than that is compacted into
    one and checkpointed, so reading it stays one small file and a short log.
    """
    table = open_table(uri, storage_options)
    write_deltalake(
        table if table is not None else uri,
        data,
        mode="append",
        storage_options=storage_options or None,
    )
    if compact_above and table is not None and len(table.file_uris()) > compact_above:
        try:
            table.optimize.compact()
            table.create_checkpoint()
        except CommitFailedError:
            # Another writer compacted or appended first; the appended rows are committed and
            # compaction is only an optimisation, so the next append tries again.
            pass


def overwrite(uri: str, data: pa.Table, storage_options: dict[str, str] | None = None) -> int:
    """Replace a whole (small, unpartitioned) table; returns the new version."""
    options = storage_options or None
    write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite", storage_options=options)
    return DeltaTable(uri, storage_options=options).version()


def read_table(
    uri: str,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, object]] | None = None,
    storage_options: dict[str, str] | None = None,
) -> pa.Table:
    """Read a Delta table (optionally some columns and a partition filter) as Arrow."""
    try:
        dt_ = DeltaTable(uri, storage_options=storage_options or None)
    except TableNotFoundError as exc:
        raise FileNotFoundError(f"no Delta table at {uri}; materialize it first") from exc
    return dt_.to_pyarrow_table(columns=list(columns) if columns else None, filters=filters)


def read_pruned(
    table: DeltaTable, columns: Sequence[str], prune: str, rows: ds.Expression
) -> pa.Table:
    """``columns`` of the rows matching ``rows``, reading only the files the SQL predicate
    ``prune`` may match by their partition values and min/max statistics in the Delta log."""
    return table.to_pyarrow_dataset(file_pruning_predicate=prune).to_table(
        columns=list(columns), filter=rows
    )


def partition_row_counts(
    uri: str, partition_column: str, storage_options: dict[str, str] | None = None
) -> dict[dt.date, int]:
    """Rows per partition of a date-partitioned table, from the Delta log (no data is read)."""
    table = open_table(uri, storage_options)
    if table is None:
        return {}
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows and actions.column("num_records").null_count == 0:
        days = actions.column(f"partition.{partition_column}").to_pylist()
        records = actions.column("num_records").to_pylist()
    else:
        # A writer that recorded no file statistics: count the partition column instead.
        days = table.to_pyarrow_table(columns=[partition_column]).column(0).to_pylist()
        records = [1] * len(days)
    counts: dict[dt.date, int] = {}
    for day, n in zip(days, records, strict=True):
        counts[day] = counts.get(day, 0) + n
    return counts


def version(uri: str, storage_options: dict[str, str] | None = None) -> int:
    """Current version of the Delta table at ``uri``."""
    return DeltaTable(uri, storage_options=storage_options or None).version()
