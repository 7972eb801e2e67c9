"""Delta Lake reads and writes through ``deltalake`` (no DuckDB extension, no Spark)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether a Delta table exists at ``uri``."""
    return DeltaTable.is_deltatable(uri, storage_options=storage_options or None)


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
    new table version.
    """
    if not dates:
        raise ValueError("replace_partitions needs at least one partition date")
    listed = ", ".join(f"'{d.isoformat()}'" for d in sorted(set(dates)))
    options = storage_options or None
    if table_exists(uri, storage_options):
        write_deltalake(
            uri,
            data,
            mode="overwrite",
            predicate=f"{partition_column} IN ({listed})",
            partition_by=[partition_column],
            storage_options=options,
        )
    else:
        write_deltalake(
            uri, data, mode="overwrite", partition_by=[partition_column], storage_options=options
        )
    return DeltaTable(uri, storage_options=options).version()


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


def version(uri: str, storage_options: dict[str, str] | None = None) -> int:
    """Current version of the Delta table at ``uri``."""
    return DeltaTable(uri, storage_options=storage_options or None).version()
