"""dbt-duckdb plugin: raw Delta tables in, feature marts out as Delta tables (via deltalake).

Sources use it with ``meta: {plugin: delta, delta_table_path: ...}`` (the built-in ``delta``
plugin's contract, plus storage options from the profile). Marts (the project's ``delta``
materialization) stage their result as Parquet, then :meth:`Plugin.store` streams that file
into the Delta table ``delta_table_path``. With ``delta_replace: from_first_partition``
(incremental runs) only the partitions from the earliest one in the output onwards are
replaced, in one Delta commit; otherwise the whole table is overwritten.
"""

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from deltalake import DeltaTable, write_deltalake

FULL = "overwrite"
INCREMENTAL = "from_first_partition"


class DeltaPluginError(RuntimeError):
    """A source or mart could not be read or written as Delta."""


class Plugin(BasePlugin):
    """Read Delta sources and write Delta marts with deltalake (no DuckDB extension needed)."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """Parse the storage options and make sure the local Parquet staging folder exists."""
        options = plugin_config.get("storage_options") or {}
        if isinstance(options, str):
            options = json.loads(options or "{}")
        self.storage_options: dict[str, str] | None = options or None
        root = getattr(self.creds, "external_root", None)
        if root and "://" not in root:
            Path(root).mkdir(parents=True, exist_ok=True)

    def default_materialization(self) -> str:
        """Sources are views over the Arrow dataset, so DuckDB pushes filters into the scan."""
        return "view"

    def load(self, source_config: SourceConfig) -> ds.Dataset:
        """The Delta table of a source as an Arrow dataset."""
        path = source_config.get("delta_table_path")
        name = source_config.table_name()
        if not path:
            raise DeltaPluginError(f"source {name}: set meta.delta_table_path")
        if not DeltaTable.is_deltatable(path, storage_options=self.storage_options):
            raise DeltaPluginError(
                f"source {name}: no Delta table at {path}. Ingest the raw feeds first "
                "(`fraudops demo`, or the Dagster `ingest` job) or set FRAUDOPS_HOME."
            )
        return DeltaTable(path, storage_options=self.storage_options).to_pyarrow_dataset()

    def store(self, target_config: TargetConfig) -> None:
        """Write the model's staged Parquet file to its Delta table."""
        config = target_config.config
        model = target_config.relation.identifier
        path = config.get("delta_table_path")
        partition = config.get("delta_partition_by")
        mode = config.get("delta_replace") or FULL
        if not path or not partition:
            raise DeltaPluginError(f"model {model}: set delta_table_path and delta_partition_by")
        if mode not in (FULL, INCREMENTAL):
            raise DeltaPluginError(f"model {model}: delta_replace must be {FULL} or {INCREMENTAL}")
        staged = ds.dataset(target_config.location.path, format="parquet")
        keys = staged.to_table(columns=[partition]).column(partition)
        if keys.null_count == len(keys):
            # No rows (dbt's `external` materialization would stage one all-NULL row instead).
            raise DeltaPluginError(
                f"model {model} produced no rows: the raw tables hold no data for the requested "
                "days. Ingest them first, or run without --vars from_date for a full rebuild."
            )
        if keys.null_count:
            raise DeltaPluginError(f"model {model}: {keys.null_count} rows have a null {partition}")
        options = {
            "partition_by": [partition],
            "storage_options": self.storage_options,
        }
        reader = staged.scanner().to_reader()
        if mode == INCREMENTAL and DeltaTable.is_deltatable(path, self.storage_options):
            first = pc.min(keys).as_py().isoformat()
            # Everything from the first rebuilt day on is replaced: stale later days go too.
            write_deltalake(
                path, reader, mode="overwrite", predicate=f"{partition} >= '{first}'", **options
            )
        else:
            write_deltalake(path, reader, mode="overwrite", schema_mode="overwrite", **options)
