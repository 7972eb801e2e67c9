"""dbt feature build (raw Delta -> feature marts in Delta) against the pandas reference.

Targets: at the reference scale (~1.75 M transactions) the feature build takes <= 30 s wall on
2 cores and is >= 10x faster than the pandas reference (features/definitions.py) on the same
data, measured in the same run; at 10x customers and terminals (~17.5 M transactions) it
completes with a peak memory <= 6 GiB. A one-day incremental ``dbt build`` (the daily run:
``FRAUDOPS_DBT_FROM_DATE`` = the newest day) costs at most 1/3 of a full ``dbt build`` at the
reference scale and 1/5 at 10x, both timed with the CLI, alternated, in the same run.

The feature build is timed two ways, each run a complete fresh build (parse, compile, run,
Delta commits): the ``dbt`` CLI as a subprocess, as Dagster and analysts run it (wall time
includes the interpreter start-up and dbt's imports, several seconds), and dbt's Python API
(``dbtRunner``) in this process, as a notebook or a Python orchestrator drives it: like the
pandas reference, it excludes imports (one untimed ``dbt parse`` loads dbt and the adapter
first). To show where the time goes, it also replays the build's SQL on DuckDB alone
(``benchmarks/duckdb_floor.py``) and times dbt's fixed cost: an in-process run of its smallest
model.

The incremental runs each follow a full build, so each is the first daily run after it: its
marts replace the newest as-of day and relabel the days whose reports arrived that day (the
month file holding them is rewritten). It is timed as is and as production runs it, without
the unit tests (``--exclude-resource-type unit_test``: fixed inputs, run by full builds and
CI). The figures also give the rows each run wrote to the marts (Delta commit metrics),
whether dbt had to parse the whole project again, dbt's floor (a CLI ``dbt build`` of its
smallest model and its two tests, alternated with the others: what any build pays before its
own work, start-up, partial parse, adapter, artifacts), and one run of the same incremental build
through ``--vars '{from_date: ...}'`` with a new value (what the project did before: dbt then
re-parses everything).

``python -m benchmarks.bench_dbt`` simulates and ingests the data into a temporary folder
first; ``--home PATH`` reuses a folder where ``fraudops demo`` already ingested it;
``--scale 10`` multiplies customers and terminals (the pandas reference is then skipped: it
would run for many minutes); ``--incremental-only`` times only the full and incremental
builds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import PeakMemory, write_figures
from benchmarks.duckdb_floor import replay_seconds
from fraudops.environ import exported, settings_env
from fraudops.settings import REPO_ROOT, Settings, get_settings

DBT_PROJECT = REPO_ROOT / "dbt_project"
MARTS = ("customer_features", "terminal_features", "labelled_transactions")
FULL_PARSE = "Unable to do partial parsing"
FEATURE_MARTS = "+customer_features +terminal_features"
# The smallest model: a run of it alone is dbt's fixed cost per invocation (manifest and
# partial-parse state, adapter and connection, artifacts), with one model's DDL on top.
SMALLEST_MODEL = "stg_lakehouse__customers"
TARGET_RATIO = 10
# The most an incremental one-day build may cost, as a share of a full build, per scale.
INCREMENTAL_TARGETS = {1: 1 / 3, 10: 1 / 5}


class _ProcessTreePeak:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.peak_bytes = 0
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
            except psutil.Error:
                rss = 0
            self.peak_bytes = max(self.peak_bytes, rss)
            self._stop.wait(self._interval)

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak_bytes / 2**20


def _dbt_paths(settings: Settings) -> dict[str, str]:
    """The environment of a benchmark dbt run: the settings and its own target/log folders."""
    return {
        **settings_env(settings),
        "DBT_TARGET_PATH": str(settings.home / "dbt" / "bench-target"),
        "DBT_LOG_PATH": str(settings.home / "dbt" / "bench-logs"),
    }


def _model_seconds(env: dict[str, str]) -> dict[str, float]:
    """Per-model execution seconds of the last dbt run (its run_results.json)."""
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    return {
        r["unique_id"].split(".")[-1]: r["execution_time"]
        for r in results["results"]
        if r["unique_id"].startswith("model.")
    }


def _dbt(settings: Settings, *args: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the dbt CLI once; wall seconds, peak RSS of the dbt process, per-model timings."""
    env = _dbt_paths(settings)
    started = time.perf_counter()
    process = psutil.Popen(
        [str(Path(sys.executable).parent / "dbt"), *args],
        cwd=DBT_PROJECT,
        env={**os.environ, **env, **(extra_env or {})},
        stdout=psutil.subprocess.PIPE,
        stderr=psutil.subprocess.STDOUT,
        text=True,
    )
    peak = _ProcessTreePeak(process.pid)
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    peak_mib = peak.stop()
    if process.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{output[-3000:]}")
    return {
        "wall": wall,
        "peak_mib": peak_mib,
        "models": _model_seconds(env),
        "nodes": _node_count(env),
        "full_parse": FULL_PARSE in output,
        "rows_written": _rows_written(settings),
    }


def _node_count(env: dict[str, str]) -> int:
    """Nodes (models, tests, unit tests, hooks) the last dbt run executed."""
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    return len(results["results"])


def _rows_written(settings: Settings) -> dict[str, int]:
    """Rows the newest commit of each mart added (Delta commit metrics)."""
    from deltalake import DeltaTable

    written = {}
    for name in MARTS:
        uri = settings.table_uri("marts", name)
        if DeltaTable.is_deltatable(uri):
            commit = DeltaTable(uri).history(1)[0]
            metrics = commit.get("operationMetrics") or {}
            added = metrics.get("num_added_rows")
            if added is None:
                # A full build's commit (files added as they are): their row statistics.
                actions = DeltaTable(uri).get_add_actions(flatten=True)
                added = sum(int(n) for n in actions.column("num_records").to_pylist())
            written[name] = int(added)
    return written


@contextlib.contextmanager
def _dbt_process_state(settings: Settings):
    """Environment and working folder a dbt invocation in this process needs, then restored."""
    env = _dbt_paths(settings)
    # profiles.yml's module_paths (the Delta plugin) are relative to the project folder.
    with exported(env), contextlib.chdir(DBT_PROJECT):
        yield env


def _invoke_in_process(settings: Settings, *args: str) -> tuple[float, dict[str, str]]:
    """Run dbt once through its Python API in this process; wall seconds and its environment."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    with _dbt_process_state(settings) as env:
        started = time.perf_counter()
        result = dbtRunner().invoke([*args, "--quiet"])
        # dbt-duckdb keeps the database (and its sources) open for a next invocation: close it
        # like the CLI's exit does (checkpoint, file lock), so every timed run starts cold.
        DuckDBConnectionManager.close_all_connections()
        wall = time.perf_counter() - started
        # The garbage of this run is collected outside the timing, as a process exit drops it.
        gc.collect()
    if not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed in process: {result.exception}")
    return wall, env


def _dbt_in_process(settings: Settings, *args: str) -> dict[str, Any]:
    """A timed in-process dbt run: wall seconds, peak RSS of this process, per-model timings."""
    with PeakMemory() as peak:
        wall, env = _invoke_in_process(settings, *args)
    return {"wall": wall, "peak_mib": peak.peak_mib, "models": _model_seconds(env)}


def _prepare(settings: Settings) -> float:
    """Simulate and ingest every day of ``settings`` into its lakehouse; seconds taken."""
    from lakehouse.ingestion import ingest_simulation

    started = time.perf_counter()
    ingest_simulation(settings)
    return time.perf_counter() - started


def _pandas_reference(settings: Settings) -> float:
    """Seconds for features/definitions.py to compute both feature tables from the raw tables."""
    from features.definitions import as_of_timestamps, customer_features, terminal_features
    from lakehouse import delta

    started = time.perf_counter()
    read = lambda name: delta.read_table(settings.table_uri("raw", name)).to_pandas()  # noqa: E731
    tx, reports = read("transactions"), read("fraud_reports")
    as_of = as_of_timestamps(tx["tx_date"].min(), tx["tx_date"].max())
    customer_features(tx, read("customers")["customer_id"], as_of)
    terminal_features(
        tx, reports, read("terminals")["terminal_id"], as_of, settings.label_delay_days
    )
    return time.perf_counter() - started


def _transactions(settings: Settings) -> int:
    from lakehouse import delta

    uri = settings.table_uri("raw", "transactions")
    return delta.read_table(uri, ["transaction_id"]).num_rows


def _figures(
    scale: int,
    settings: Settings,
    n_tx: int,
    prepare_seconds: float,
    cli_runs: list[dict],
    api_runs: list[dict],
    build: dict,
    replay: dict[str, float],
    fixed_runs: list[float],
    pandas_seconds: float | None,
) -> dict[str, Any]:
    """The benchmark's figures: medians of the feature builds and their ratios to pandas."""
    cli = statistics.median(r["wall"] for r in cli_runs)
    api = statistics.median(r["wall"] for r in api_runs)
    models = statistics.median(sum(r["models"].values()) for r in [*cli_runs, *api_runs])

    def ratio(seconds: float) -> float | None:
        return round(pandas_seconds / seconds, 1) if pandas_seconds else None

    return {
        "scale": scale,
        "customers": settings.sim_customers,
        "terminals": settings.sim_terminals,
        "transactions": n_tx,
        "prepare_seconds": round(prepare_seconds, 1),
        "feature_build_cli_wall_seconds_median": round(cli, 2),
        "feature_build_in_process_wall_seconds_median": round(api, 2),
        "feature_build_in_process_wall_seconds": [round(r["wall"], 2) for r in api_runs],
        "feature_build_model_seconds_median": round(models, 2),
        "feature_build_cli_peak_rss_mib": round(max(r["peak_mib"] for r in cli_runs)),
        "feature_build_in_process_peak_rss_mib": round(max(r["peak_mib"] for r in api_runs)),
        "full_dbt_build_wall_seconds": round(build["wall"], 2),
        "full_dbt_build_peak_rss_mib": round(build["peak_mib"]),
        "model_seconds": {k: round(v, 2) for k, v in api_runs[-1]["models"].items()},
        # The same SQL on DuckDB alone: what is left of the build without dbt.
        "duckdb_replay_seconds_median": round(replay["total"], 2),
        "duckdb_replay_step_seconds": {k: round(v, 3) for k, v in replay.items() if k != "total"},
        # dbt in process running one small model: what any dbt build pays before its SQL.
        "dbt_fixed_in_process_seconds_median": round(statistics.median(fixed_runs), 3),
        "target_ratio": TARGET_RATIO,
        "in_process_seconds_for_target_ratio": (
            round(pandas_seconds / TARGET_RATIO, 2) if pandas_seconds else None
        ),
        "pandas_reference_seconds": round(pandas_seconds, 2) if pandas_seconds else None,
        "speedup_vs_pandas_cli_wall": ratio(cli),
        "speedup_vs_pandas_in_process_wall": ratio(api),
        "speedup_vs_pandas_models": ratio(models),
        "speedup_vs_pandas_duckdb_replay": ratio(replay["total"]),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets": "scale 1: <= 30 s wall and >= 10x pandas; scale 10: completes, <= 6 GiB",
    }


def _report(figures: dict[str, Any]) -> None:
    """Print the figures a reader compares with the targets."""
    print(
        f"dbt feature build, {figures['transactions']:,} transactions (scale "
        f"{figures['scale']}): median {figures['feature_build_cli_wall_seconds_median']:.1f} s "
        f"wall with the dbt CLI, {figures['feature_build_in_process_wall_seconds_median']:.1f} s "
        f"in process (dbtRunner), models {figures['feature_build_model_seconds_median']:.1f} s; "
        f"peak RSS {figures['feature_build_cli_peak_rss_mib']} MiB (CLI); full dbt build with "
        f"tests {figures['full_dbt_build_wall_seconds']:.1f} s"
    )
    if figures["pandas_reference_seconds"]:
        print(
            f"pandas reference: {figures['pandas_reference_seconds']:.1f} s -> dbt is "
            f"{figures['speedup_vs_pandas_cli_wall']}x faster (CLI wall), "
            f"{figures['speedup_vs_pandas_in_process_wall']}x (in process), "
            f"{figures['speedup_vs_pandas_models']}x (model time)"
        )
    replay = f"the same SQL on DuckDB alone: {figures['duckdb_replay_seconds_median']:.1f} s"
    if figures["speedup_vs_pandas_duckdb_replay"]:
        replay += f" ({figures['speedup_vs_pandas_duckdb_replay']}x pandas)"
    print(replay)
    print(
        f"dbt's fixed cost in process (a run of one small model): "
        f"{figures['dbt_fixed_in_process_seconds_median']:.2f} s"
    )
    if figures["in_process_seconds_for_target_ratio"]:
        print(
            f"{figures['target_ratio']}x pandas needs an in-process build of at most "
            f"{figures['in_process_seconds_for_target_ratio']:.2f} s"
        )


def _incremental_runs(settings: Settings, repeat: int, scale: int) -> dict[str, Any]:
    """Full and one-day incremental builds, alternated; then the same through ``--vars``.

    The incremental build is timed twice: as is, and as a production run does it, without the
    unit tests (their inputs are fixed rows: dbt recommends running them in development and CI
    only, and the full builds run them).
    """
    last = settings.sim_end_date.isoformat()
    daily = {"FRAUDOPS_DBT_FROM_DATE": last}
    runs: dict[str, list[dict]] = {"full": [], "incremental": [], "production": []}
    floor_runs = []
    for _ in range(repeat):
        runs["full"].append(_dbt(settings, "build"))
        runs["incremental"].append(_dbt(settings, "build", extra_env=daily))
        runs["production"].append(
            _dbt(settings, "build", "--exclude-resource-type", "unit_test", extra_env=daily)
        )
        # What any dbt build invocation costs before its work: the smallest model and its tests.
        # Cautious: not the tests that also read a mart (its view is over the last run's files).
        floor = ("build", "--select", SMALLEST_MODEL, "--indirect-selection", "cautious")
        floor_runs.append(_dbt(settings, *floor)["wall"])
    # The same daily run given as a dbt var dbt has not parsed with: the project's old way.
    vars_run = _dbt(settings, "build", "--vars", json.dumps({"from_date": last}))
    target = INCREMENTAL_TARGETS.get(scale)
    full = statistics.median(r["wall"] for r in runs["full"])
    figures: dict[str, Any] = {
        "incremental_from_date": last,
        "incremental_target_ratio": round(target, 3) if target else None,
    }
    for kind, kind_runs in runs.items():
        median = statistics.median(r["wall"] for r in kind_runs)
        prefix = "full_build" if kind == "full" else f"{kind}_build"
        figures.update(
            {
                f"{prefix}_wall_seconds": [round(r["wall"], 2) for r in kind_runs],
                f"{prefix}_wall_seconds_median": round(median, 2),
                f"{prefix}_nodes": kind_runs[-1]["nodes"],
                f"{prefix}_rows_written": kind_runs[-1]["rows_written"],
                f"{prefix}_model_seconds": {
                    k: round(v, 2) for k, v in kind_runs[-1]["models"].items()
                },
                f"{prefix}_peak_rss_mib": round(max(r["peak_mib"] for r in kind_runs)),
                f"{prefix}_full_parse": any(r["full_parse"] for r in kind_runs),
            }
        )
        if kind != "full":
            figures[f"{prefix}_to_full_ratio"] = round(median / full, 3)
            figures[f"{prefix}_meets_target"] = (median / full <= target) if target else None
    floor = statistics.median(floor_runs)
    figures["cli_floor_build_wall_seconds"] = [round(w, 2) for w in floor_runs]
    figures["cli_floor_build_wall_seconds_median"] = round(floor, 2)
    figures["cli_floor_build_to_full_ratio"] = round(floor / full, 3)
    figures["vars_incremental_build_wall_seconds"] = round(vars_run["wall"], 2)
    figures["vars_incremental_build_full_parse"] = vars_run["full_parse"]
    return figures


def _report_incremental(figures: dict[str, Any]) -> None:
    """Print the incremental figures a reader compares with the target."""
    target = figures["incremental_target_ratio"]
    goal = f" (target <= {target:.2f})" if target else ""
    print(
        f"full dbt build: median {figures['full_build_wall_seconds_median']:.1f} s "
        f"({figures['full_build_nodes']} nodes), rows written {figures['full_build_rows_written']}"
    )
    labels = {"incremental": "one-day incremental", "production": "the same without unit tests"}
    for kind, label in labels.items():
        print(
            f"{label} build (from {figures['incremental_from_date']}): median "
            f"{figures[f'{kind}_build_wall_seconds_median']:.1f} s "
            f"({figures[f'{kind}_build_nodes']} nodes) = "
            f"{figures[f'{kind}_build_to_full_ratio']:.2f} of the full build{goal}; rows written "
            f"{figures[f'{kind}_build_rows_written']}; whole-project parse: "
            f"{figures[f'{kind}_build_full_parse']}"
        )
    print(
        f"dbt's floor, a CLI build of its smallest model ({SMALLEST_MODEL}, 2 tests): median "
        f"{figures['cli_floor_build_wall_seconds_median']:.1f} s = "
        f"{figures['cli_floor_build_to_full_ratio']:.2f} of the full build"
    )
    print(
        f"the same incremental build through --vars: "
        f"{figures['vars_incremental_build_wall_seconds']:.1f} s (whole-project parse: "
        f"{figures['vars_incremental_build_full_parse']})"
    )


def _feature_builds(settings: Settings, repeat: int) -> dict[str, Any]:
    """The feature build (CLI and in process, alternated), its DuckDB replay, dbt's fixed cost."""
    # Loads dbt and the adapter in this process (the imports the pandas timing excludes).
    _invoke_in_process(settings, "parse")
    cli_runs, api_runs = [], []
    for _ in range(repeat):
        # Alternated, so both see the same background load.
        cli_runs.append(_dbt(settings, "run", "--select", FEATURE_MARTS))
        api_runs.append(_dbt_in_process(settings, "run", "--select", FEATURE_MARTS))
    replay = replay_seconds(Path(_dbt_paths(settings)["DBT_TARGET_PATH"]), repeat)
    # After the replay, which reads the feature build's run_results.json.
    fixed_runs = [
        _invoke_in_process(settings, "run", "--select", SMALLEST_MODEL)[0] for _ in range(repeat)
    ]
    return {"cli_runs": cli_runs, "api_runs": api_runs, "replay": replay, "fixed_runs": fixed_runs}


def main(
    scale: int = 1,
    home: Path | None = None,
    repeat: int = 3,
    reference: bool | None = None,
    incremental_only: bool = False,
) -> dict:
    """Time the dbt feature build (CLI, in process), full and incremental builds, and pandas."""
    reference = (scale == 1 and not incremental_only) if reference is None else reference
    base = get_settings()
    workdir = None if home else Path(tempfile.mkdtemp(prefix="fraudops-bench-dbt-"))
    settings = get_settings(
        home=home or workdir / "var",
        sim_customers=base.sim_customers * scale,
        sim_terminals=base.sim_terminals * scale,
    )
    try:
        prepare_seconds = _prepare(settings) if workdir else 0.0
        n_tx = _transactions(settings)
        feature = None if incremental_only else _feature_builds(settings, repeat)
        incremental = _incremental_runs(settings, repeat, scale)
        pandas_seconds = _pandas_reference(settings) if reference else None
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if feature is None:
        figures = {
            "scale": scale,
            "customers": settings.sim_customers,
            "terminals": settings.sim_terminals,
            "transactions": n_tx,
            "prepare_seconds": round(prepare_seconds, 1),
        }
    else:
        build = {
            "wall": incremental["full_build_wall_seconds_median"],
            "peak_mib": incremental["full_build_peak_rss_mib"],
        }
        figures = _figures(
            scale,
            settings,
            n_tx,
            prepare_seconds,
            feature["cli_runs"],
            feature["api_runs"],
            build,
            feature["replay"],
            feature["fixed_runs"],
            pandas_seconds,
        )
    figures.update(incremental)
    figures.update(
        repeat=repeat,
        cpu_count=os.cpu_count(),
        load_average_1min_end=round(os.getloadavg()[0], 2),
    )
    if feature is not None:
        _report(figures)
    _report_incremental(figures)
    topic = "dbt_incremental" if incremental_only else "dbt"
    write_figures(topic if scale == 1 else f"{topic}_scale{scale}", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="Multiply customers and terminals.")
    parser.add_argument("--home", type=Path, help="Reuse an ingested FRAUDOPS_HOME.")
    parser.add_argument("--repeat", type=int, default=3, help="Builds of each kind to time.")
    parser.add_argument("--no-reference", action="store_true", help="Skip the pandas reference.")
    parser.add_argument(
        "--incremental-only", action="store_true", help="Time only full vs incremental builds."
    )
    args = parser.parse_args()
    main(
        args.scale,
        args.home,
        args.repeat,
        False if args.no_reference else None,
        args.incremental_only,
    )
