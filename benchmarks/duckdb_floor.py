"""The SQL of a finished dbt run replayed straight on DuckDB, without dbt: the engine's share.

``bench_dbt`` uses it to split the feature build's time between DuckDB (reading the Delta
sources, the staging tables, the mart COPYs) and dbt itself (parsing, compiling, the
materializations' DDL, caches and artifacts). It replays the models of ``run_results.json``
in their execution order (one dbt thread), with the compiled SQL of ``manifest.json``, into a
fresh database of the same name, so the models' fully qualified names resolve. Marts are
written as partitioned Parquet like the ``delta`` materialization does; only the Delta commit
(a few add actions) is left out.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

# The profile's DuckDB settings (dbt_project/profiles.yml), and no progress bar on stdout.
SETTINGS = {"TimeZone": "UTC", "preserve_insertion_order": "false", "enable_progress_bar": "false"}


def _executed_models(target: Path, manifest: dict) -> list[dict[str, Any]]:
    """The manifest nodes of the models the last run executed, in execution order."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    return [
        manifest["nodes"][r["unique_id"]] for r in results if r["unique_id"].startswith("model.")
    ]


def _sources(manifest: dict, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Delta sources the models read."""
    ids = {dep for m in models for dep in m["depends_on"]["nodes"] if dep.startswith("source.")}
    return [manifest["sources"][i] for i in sorted(ids)]


def _replay(database: Path, sources: list[dict], models: list[dict], out: Path) -> dict[str, float]:
    """Run the sources and models once into ``database``; seconds per step and in all."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    con = duckdb.connect(str(database))
    for key, value in SETTINGS.items():
        con.execute(f"SET {key} = '{value}'")
    schemas = {m["schema"] for m in [*sources, *models]}
    for schema in sorted(schemas):
        con.execute(f'CREATE SCHEMA "{schema}"')
    step = time.perf_counter()
    for source in sources:
        path, empty = source["meta"]["delta_table_path"], source["meta"].get("empty_if_missing")
        name = f"{source['schema']}_{source['name']}_df"
        if empty and not DeltaTable.is_deltatable(path):
            # A home ingested before the ingestion log existed reads it as an empty table.
            arrow = pa.table({c: pa.array([], pa.type_for_alias(t)) for c, t in empty.items()})
        else:
            query = QueryBuilder().register("s", DeltaTable(path)).execute("select * from s")
            arrow = pa.table(query)
        con.register(name, arrow)
        con.execute(f"CREATE VIEW {source['relation_name']} AS SELECT * FROM {name}")
    seconds["read sources"] = time.perf_counter() - step
    for model in models:
        step = time.perf_counter()
        sql, kind = model["compiled_code"], model["config"]["materialized"]
        if kind == "delta":
            folder = out / model["name"]
            folder.mkdir(parents=True)
            partition = model["config"]["delta_partition_by"]
            con.execute(
                f"COPY ({sql}) TO '{folder}' "
                f"(FORMAT parquet, PARTITION_BY ({partition}), RETURN_STATS)"
            ).fetchall()
        elif kind in ("table", "view"):
            con.execute(f"CREATE {kind} {model['relation_name']} AS {sql}")
        else:
            raise ValueError(f"cannot replay the {kind} materialization of {model['name']}")
        seconds[model["name"]] = time.perf_counter() - step
    con.close()
    seconds["total"] = time.perf_counter() - started
    return seconds


def replay_seconds(target: Path, repeat: int = 3) -> dict[str, float]:
    """Median seconds of replaying the last dbt run's SQL on DuckDB alone, in all and per step."""
    manifest = json.loads((target / "manifest.json").read_text())
    models = _executed_models(target, manifest)
    sources = _sources(manifest, models)
    database = models[0]["database"]
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fraudops-duckdb-floor-") as work:
            runs.append(_replay(Path(work) / f"{database}.duckdb", sources, models, Path(work)))
    return {step: statistics.median(run[step] for run in runs) for step in runs[0]}
