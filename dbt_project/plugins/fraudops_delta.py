"""dbt-duckdb plugin: raw Delta tables in, feature marts out as Delta tables (via deltalake).

Sources use it with ``meta: {plugin: delta, delta_table_path: ...}`` (the built-in ``delta``
plugin's contract, plus storage options from the profile). Marts (the project's ``delta``
materialization) have DuckDB write their partitioned Parquet files straight into the Delta
table's folder; :meth:`Plugin.store` stages those files, and the project's ``on-run-end`` hook
(``macros/delta_commit.sql``) finishes the invocation: when every node of it passed, each
staged mart is committed as one Delta transaction, with the per-file statistics DuckDB
returned, so no row is written twice; otherwise the staged files are deleted and no table
changes. Delta readers never see staged files: only the log says which files are the table.
A full run replaces the whole table. With ``delta_replace: rows_from`` (incremental runs) the
files are staged outside the table and ``write_deltalake`` replaces, in one commit, the rows
of every day from ``delta_first_day`` on and of every other day the output holds (deltalake
rewrites only the files holding such rows, using the per-file statistics of the day column).
A remote lakehouse (``s3://...``), which DuckDB cannot write here, gets the files staged
locally and copied by ``write_deltalake``.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from dbt.adapters.events.logging import AdapterLogger
from deltalake import DeltaTable, QueryBuilder, Schema, write_deltalake
from deltalake.transaction import AddAction, create_table_with_add_actions
from fraudops_delta_stats import add_action_stats

# The variable that makes a run incremental (macros/run_days.sql).
FROM_DATE_VARIABLE = "FRAUDOPS_DBT_FROM_DATE"
# The SQL function the `delta` materialization calls before its COPY.
PREPARE_FOLDER = "fraudops_delta_prepare_folder"
FULL = "overwrite"
INCREMENTAL = "rows_from"
# The two calls of a mart's write: the materialization stages, the on-run-end hook finishes.
STAGE = "stage"
FINISH = "finish"
# DuckDB types a mart may be partitioned by (the partition column is not in the files).
PARTITION_TYPES = {
    "DATE": pa.date32(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "VARCHAR": pa.string(),
}

logger = AdapterLogger("fraudops_delta")


class DeltaPluginError(RuntimeError):
    """A source or mart could not be read or written as Delta."""


@dataclass
class StagedMart:
    """A mart's Parquet files, written but not committed yet, and how to commit them."""

    model: str
    path: str
    files: list[dict]
    schema: pa.Schema
    partition: str
    mode: str
    day_column: str | None = None
    first_day: str | None = None

    def discard(self) -> None:
        """Delete the staged files: no Delta version references them."""
        for file in self.files:
            Path(file["path"]).unlink(missing_ok=True)


class Plugin(BasePlugin):
    """Read Delta sources and write Delta marts with deltalake (no DuckDB extension needed)."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """Parse the storage options and make sure the local Parquet staging folder exists."""
        options = plugin_config.get("storage_options") or {}
        if isinstance(options, str):
            options = json.loads(options or "{}")
        self.storage_options: dict[str, str] | None = options or None
        self._snapshots: dict[tuple[str, int, bool], pa.Table | ds.Dataset] = {}
        # Marts written but not committed yet, by dbt invocation id.
        self._staged: dict[str, list[StagedMart]] = {}
        root = getattr(self.creds, "external_root", None)
        if root and "://" not in root:
            Path(root).mkdir(parents=True, exist_ok=True)

    def configure_connection(self, conn: Any) -> None:
        """Let SQL create a mart's table folder: DuckDB's COPY creates only the last level."""
        conn.create_function(
            PREPARE_FOLDER, _prepare_folder, ["VARCHAR"], "VARCHAR", side_effects=True
        )

    def default_materialization(self) -> str:
        """Sources are views over the Arrow table: staging models copy what they need."""
        return "view"

    def load(self, source_config: SourceConfig) -> pa.Table | ds.Dataset:
        """The current snapshot of a source's Delta table, read by delta-rs into Arrow memory.

        In an incremental run (``FRAUDOPS_DBT_FROM_DATE`` set) a partitioned table is a lazy
        pyarrow dataset instead: DuckDB reads only the partitions the models' filters keep.

        A missing table fails, unless the source's ``meta.empty_if_missing`` gives its columns
        (name: Arrow type alias): then it reads as an empty table of those columns.
        """
        path = source_config.get("delta_table_path")
        name = source_config.table_name()
        if not path:
            raise DeltaPluginError(f"source {name}: set meta.delta_table_path")
        if not DeltaTable.is_deltatable(path, storage_options=self.storage_options):
            empty = source_config.get("empty_if_missing")
            if empty:
                # A table only some lakehouses have yet: none is an empty one.
                return pa.table({c: pa.array([], pa.type_for_alias(t)) for c, t in empty.items()})
            raise DeltaPluginError(
                f"source {name}: no Delta table at {path}. Ingest the raw feeds first "
                "(`fraudops demo`, or the Dagster `ingest` job) or set FRAUDOPS_HOME."
            )
        table = DeltaTable(path, storage_options=self.storage_options)
        # An incremental run reads a few days of a partitioned table: a dataset, which DuckDB
        # scans lazily, pushing the models' day filters down to the Delta partitions, so only
        # those days' files are read (the feed inventories read the partition column alone).
        lazy = _is_incremental_run() and bool(table.metadata().partition_columns)
        key = (path, table.version(), lazy)
        # dbt-duckdb loads a source once per model that reads it: read each version once.
        if key not in self._snapshots:
            self._snapshots = {k: v for k, v in self._snapshots.items() if k[0] != path}
            if lazy:
                self._snapshots[key] = table.to_pyarrow_dataset()
            else:
                # A full read: delta-rs reads the files in parallel, several times faster than
                # DuckDB scanning a pyarrow dataset of many small daily files.
                reader = QueryBuilder().register("source", table).execute("select * from source")
                self._snapshots[key] = pa.table(reader)
        return self._snapshots[key]

    def store(self, target_config: TargetConfig) -> None:
        """Stage a mart's files (``delta_action: stage``) or finish the invocation (``finish``)."""
        config = target_config.config
        action = config.get("delta_action")
        invocation = config.get("invocation_id")
        if action not in (STAGE, FINISH) or not invocation:
            raise DeltaPluginError(f"delta_action must be {STAGE} or {FINISH}, with invocation_id")
        if action == FINISH:
            self._finish(invocation, list(config.get("failed") or []))
            return
        staged = self._stage(target_config)
        self._staged.setdefault(invocation, []).append(staged)

    def _stage(self, target_config: TargetConfig) -> StagedMart:
        """Check the Parquet files the model's COPY wrote; they are committed at the end."""
        config = target_config.config
        model = target_config.relation.identifier
        path = config.get("delta_table_path")
        partition = config.get("delta_partition_by")
        mode = config.get("delta_replace") or FULL
        if not path or not partition:
            raise DeltaPluginError(f"model {model}: set delta_table_path and delta_partition_by")
        if mode not in (FULL, INCREMENTAL):
            raise DeltaPluginError(f"model {model}: delta_replace must be {FULL} or {INCREMENTAL}")
        day_column, first_day = config.get("delta_day_column"), config.get("delta_first_day")
        if mode == INCREMENTAL and not (day_column and first_day):
            raise DeltaPluginError(
                f"model {model}: an incremental write needs delta_day_column and delta_first_day"
            )
        files = [_written_file(row) for row in config.get("written_files") or []]
        if not files:
            # No rows (dbt's `external` materialization would stage one all-NULL row instead).
            raise DeltaPluginError(
                f"model {model} produced no rows: the raw tables hold no data for the requested "
                "days. Ingest them first, or run without --vars from_date for a full rebuild."
            )
        try:
            nulls = sum(f["rows"] for f in files if f["partition"].get(partition) is None)
            if nulls:
                raise DeltaPluginError(f"model {model}: {nulls} rows have a null {partition}")
            schema = _arrow_schema(files[0]["path"], config.get("columns"), partition)
        except Exception:
            # The model fails: its files must not linger in the table's folder.
            StagedMart(model, path, files, pa.schema([]), partition, mode).discard()
            raise
        return StagedMart(model, path, files, schema, partition, mode, day_column, first_day)

    def _finish(self, invocation: str, failed: list[str]) -> None:
        """Commit the marts ``invocation`` staged if nothing failed, else delete their files."""
        marts = self._staged.pop(invocation, [])
        # An earlier invocation in this process that never finished (interrupted): its files
        # belong to no table version, and never will.
        for stale in self._staged.values():
            for mart in stale:
                mart.discard()
        self._staged.clear()
        if not marts:
            return
        if failed:
            for mart in marts:
                mart.discard()
            # The failures first: the skipped nodes only follow from them.
            failed.sort(key=lambda node: node.endswith(": skipped"))
            shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
            logger.info(
                f"delta: not writing {', '.join(m.model for m in marts)}: {len(failed)} node(s) "
                f"of the invocation did not pass ({shown}); their Delta tables are unchanged"
            )
            return
        for i, mart in enumerate(marts):
            try:
                version = self._write(mart)
            except Exception:
                for rest in marts[i + 1 :]:
                    rest.discard()
                done = ", ".join(m.model for m in marts[:i]) or "none"
                logger.info(f"delta: committing {mart.model} failed; committed before it: {done}")
                raise
            logger.info(f"delta: committed {mart.model} as Delta version {version}")

    def _write(self, mart: StagedMart) -> int:
        """Commit one staged mart to its Delta table; the table's new version."""
        exists = DeltaTable.is_deltatable(mart.path, self.storage_options)
        if mart.mode == INCREMENTAL and exists:
            self._replace_rows(mart)
        elif mart.mode == INCREMENTAL or "://" in mart.path:
            # Staged outside the table: an incremental run creating it, or a remote lakehouse.
            self._copy_staged(mart)
        else:
            self._commit(mart.path, mart.files, mart.schema, mart.partition)
        if mart.mode == INCREMENTAL:
            # The staged copy is not part of the table: the next run stages its own.
            mart.discard()
        return DeltaTable(mart.path, storage_options=self.storage_options).version()

    def _commit(self, path: str, files: list[dict], schema: pa.Schema, partition: str) -> None:
        """Add ``files`` (already inside the table folder) in one commit, replacing the table."""
        root = Path(path).resolve()
        actions = [
            AddAction(
                path=Path(f["path"]).resolve().relative_to(root).as_posix(),
                size=f["size"],
                partition_values=f["partition"],
                modification_time=int(Path(f["path"]).stat().st_mtime * 1000),
                data_change=True,
                stats=add_action_stats(f["rows"], f["statistics"], schema),
            )
            for f in files
        ]
        table = (
            DeltaTable(path, storage_options=self.storage_options)
            if DeltaTable.is_deltatable(path, self.storage_options)
            else None
        )
        if table is None or pa.schema(table.schema().to_arrow()) != schema:
            # New table, or columns changed: replace the table outright.
            create_table_with_add_actions(
                path,
                Schema.from_arrow(schema),
                actions,
                mode="overwrite",
                partition_by=[partition],
                storage_options=self.storage_options,
            )
            return
        table.create_write_transaction(
            actions, mode="overwrite", schema=schema, partition_by=[partition]
        )

    def _staged_dataset(self, mart: StagedMart) -> ds.Dataset:
        """The staged files as one dataset, the partition column included."""
        return ds.dataset(
            [f["path"] for f in mart.files],
            schema=mart.schema,
            format="parquet",
            partitioning=ds.partitioning(
                pa.schema([mart.schema.field(mart.partition)]), flavor="hive"
            ),
            partition_base_dir=str(Path(mart.files[0]["path"]).parent.parent),
        )

    def _copy_staged(self, mart: StagedMart) -> None:
        """Write the staged files as the whole Delta table (a remote or a new one)."""
        write_deltalake(
            mart.path,
            self._staged_dataset(mart).scanner().to_reader(),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=[mart.partition],
            storage_options=self.storage_options,
        )

    def _replace_rows(self, mart: StagedMart) -> None:
        """Replace the rows of the days an incremental run rebuilt with the staged ones.

        Those days are every day from ``first_day`` on (a day no longer in the output is
        deleted) and any earlier day the output holds (labels that changed). One commit;
        deltalake skips, by their statistics, the files without such rows.
        """
        table = DeltaTable(mart.path, storage_options=self.storage_options)
        if pa.schema(table.schema().to_arrow()) != mart.schema:
            raise DeltaPluginError(
                f"model {mart.model}: its columns differ from those of the Delta table at "
                f"{mart.path}; an incremental run only replaces rows: run a full build"
            )
        day = mart.day_column
        staged = self._staged_dataset(mart)
        days = pc.unique(staged.to_table(columns=[day]).column(day)).to_pylist()
        earlier = sorted(str(d) for d in days if str(d) < mart.first_day)
        predicate = f"{day} >= '{mart.first_day}'"
        if earlier:
            predicate += f" or {day} in ({', '.join(repr(d) for d in earlier)})"
        write_deltalake(
            mart.path,
            staged.scanner().to_reader(),
            mode="overwrite",
            predicate=predicate,
            partition_by=[mart.partition],
            storage_options=self.storage_options,
        )


def _is_incremental_run() -> bool:
    """True when the run has a first changed raw day (macros/run_days.sql validates it).

    A day given as ``--vars from_date`` is not visible here: such a run reads the sources in
    full, with the same results. Read from the environment, not from the profile's plugin
    config: a profile that changes with the day would make dbt re-parse the whole project.
    """
    return bool(os.environ.get(FROM_DATE_VARIABLE, "").strip())


def _prepare_folder(path: str) -> str:
    """Create a local folder (and its parents) if missing; ``path`` back."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def _written_file(row: Any) -> dict:
    """One row of DuckDB's ``COPY ... (RETURN_STATS)`` result, as handed over by the model."""
    path, rows, size, statistics, partition = row
    return {
        "path": str(path),
        "rows": int(rows),
        "size": int(size),
        "statistics": json.loads(statistics) if isinstance(statistics, str) else statistics,
        "partition": json.loads(partition) if isinstance(partition, str) else partition,
    }


def _arrow_schema(first_file: str, columns: list | None, partition: str) -> pa.Schema:
    """The mart's schema in the model's column order: file types, plus the partition column."""
    file_schema = pq.read_schema(first_file)
    fields = []
    for name, duckdb_type in columns or []:
        if name == partition:
            if duckdb_type not in PARTITION_TYPES:
                raise DeltaPluginError(f"cannot partition a Delta table by a {duckdb_type} column")
            fields.append(pa.field(name, PARTITION_TYPES[duckdb_type]))
        else:
            fields.append(file_schema.field(name))
    return pa.schema(fields)
