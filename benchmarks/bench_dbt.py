"""dbt feature build (raw Delta -> feature marts in Delta) against the pandas reference.

Targets (issue 3): at the reference scale (~1.75 M transactions) the feature build takes
<= 30 s wall on 2 cores and is >= 10x faster than the pandas reference (ml/features.py) on the
same data, measured in the same run; at 10x customers and terminals (~17.5 M transactions) it
completes with a peak memory <= 6 GiB.

``python -m benchmarks.bench_dbt`` simulates and ingests the data into a temporary folder
first; ``--home PATH`` reuses a folder where ``fraudops demo`` already ingested it;
``--scale 10`` multiplies customers and terminals (the pandas reference is then skipped: it
would run for many minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from benchmarks.common import write_figures
from fraudops.settings import REPO_ROOT, Settings, get_settings

DBT_PROJECT = REPO_ROOT / "dbt_project"
FEATURE_MARTS = "+customer_features +terminal_features"


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


def _dbt(settings: Settings, *args: str) -> dict[str, Any]:
    """Run dbt once; wall seconds, peak RSS of the dbt process and its per-model timings."""
    from orchestration.defs.dbt.resources import dbt_env

    target = settings.home / "dbt" / "bench-target"
    env = {**os.environ, **dbt_env(settings), "DBT_TARGET_PATH": str(target)}
    env["DBT_LOG_PATH"] = str(settings.home / "dbt" / "bench-logs")
    started = time.perf_counter()
    process = psutil.Popen(
        [str(Path(sys.executable).parent / "dbt"), *args],
        cwd=DBT_PROJECT,
        env=env,
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
    results = json.loads((target / "run_results.json").read_text())["results"]
    models = {
        r["unique_id"].split(".")[-1]: r["execution_time"]
        for r in results
        if r["unique_id"].startswith("model.")
    }
    return {"wall": wall, "peak_mib": peak_mib, "models": models}


def _prepare(settings: Settings) -> float:
    """Simulate and ingest every day of ``settings`` into its lakehouse; seconds taken."""
    from lakehouse.ingestion import Lakehouse, ingest_feed, ingest_master_data

    started = time.perf_counter()
    lakehouse = Lakehouse(settings)
    for name in ("customers", "terminals"):
        ingest_master_data(lakehouse, name)
    days = [settings.sim_start_date + dt.timedelta(days=i) for i in range(settings.sim_days)]
    for feed in ("transactions", "fraud_reports"):
        ingest_feed(lakehouse, feed, days)
    return time.perf_counter() - started


def _pandas_reference(settings: Settings) -> float:
    """Seconds for ml/features.py to compute both feature tables from the raw Delta tables."""
    from lakehouse import delta
    from ml.features import as_of_timestamps, customer_features, terminal_features

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


def main(
    scale: int = 1, home: Path | None = None, repeat: int = 3, reference: bool | None = None
) -> dict:
    """Time the dbt feature build (median of ``repeat``), a full dbt build, and the reference."""
    reference = scale == 1 if reference is None else reference
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
        runs = [_dbt(settings, "run", "--select", FEATURE_MARTS) for _ in range(repeat)]
        build = _dbt(settings, "build")
        pandas_seconds = _pandas_reference(settings) if reference else None
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = statistics.median(r["wall"] for r in runs)
    in_engine = statistics.median(sum(r["models"].values()) for r in runs)
    figures: dict[str, Any] = {
        "scale": scale,
        "customers": settings.sim_customers,
        "terminals": settings.sim_terminals,
        "transactions": n_tx,
        "prepare_seconds": round(prepare_seconds, 1),
        "feature_build_wall_seconds_median": round(wall, 2),
        "feature_build_model_seconds_median": round(in_engine, 2),
        "feature_build_peak_rss_mib": round(max(r["peak_mib"] for r in runs)),
        "full_dbt_build_wall_seconds": round(build["wall"], 2),
        "full_dbt_build_peak_rss_mib": round(build["peak_mib"]),
        "model_seconds": {k: round(v, 2) for k, v in runs[-1]["models"].items()},
        "pandas_reference_seconds": round(pandas_seconds, 2) if pandas_seconds else None,
        "speedup_vs_pandas_wall": round(pandas_seconds / wall, 1) if pandas_seconds else None,
        "speedup_vs_pandas_models": round(pandas_seconds / in_engine, 1)
        if pandas_seconds
        else None,
        "repeat": repeat,
        "cpu_count": os.cpu_count(),
        "targets": "scale 1: <= 30 s wall and >= 10x pandas; scale 10: completes, <= 6 GiB",
    }
    print(
        f"dbt feature build, {n_tx:,} transactions (scale {scale}): median {wall:.1f} s wall "
        f"(dbt CLI included; models {in_engine:.1f} s), peak RSS "
        f"{figures['feature_build_peak_rss_mib']} MiB; full dbt build with tests "
        f"{build['wall']:.1f} s"
    )
    if pandas_seconds:
        print(
            f"pandas reference: {pandas_seconds:.1f} s -> dbt is "
            f"{figures['speedup_vs_pandas_wall']}x faster (wall), "
            f"{figures['speedup_vs_pandas_models']}x (model time)"
        )
    write_figures("dbt" if scale == 1 else f"dbt_scale{scale}", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="Multiply customers and terminals.")
    parser.add_argument("--home", type=Path, help="Reuse an ingested FRAUDOPS_HOME.")
    parser.add_argument("--repeat", type=int, default=3, help="Feature builds to time.")
    parser.add_argument("--no-reference", action="store_true", help="Skip the pandas reference.")
    args = parser.parse_args()
    main(args.scale, args.home, args.repeat, False if args.no_reference else None)
