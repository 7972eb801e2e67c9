"""XGBoost's final fit on a dask.distributed cluster against the single-process fit, in one run.

Both fit the same parameters on the same training window of the platform's training set
(Feast's point-in-time join, ``features/training_set``); the figures are the test window's
average precision of each (target: within 0.005), wall seconds (median of ``--repeat``) and the
peak memory of the driver and of each dask worker. The cluster is a ``LocalCluster`` of
``training_dask_workers`` processes here (``FRAUDOPS_TRAINING_DASK_SCHEDULER`` points it at a
real one).

``python -m benchmarks.bench_distributed --home PATH`` uses a runtime folder whose training set
is built (``make demo`` builds ``var``'s); ``--scale 10`` without ``--home`` simulates and
ingests 10x customers and terminals into a temporary folder, builds the marts with dbt and the
training set with Feast first (many minutes). ``--scale 10 --home PATH --ingest`` does the same
into ``PATH`` and keeps it, so that later runs with ``--scale 10 --home PATH`` skip it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from sklearn.metrics import average_precision_score

from benchmarks.common import PeakMemory, median_time, write_figures
from fraudops.settings import Settings, get_settings
from ml.dataset import load_training_set
from ml.distributed import dask_client, train_xgboost_dask, train_xgboost_dask_from_table
from ml.pipeline import make_splits
from ml.split import labelled_days_needed, protocol_splits
from ml.train import train_xgboost

# The reference search's usual winner (docs/training.md): deep trees, 100 rounds.
PARAMS = {"max_depth": 6, "learning_rate": 0.1, "num_boost_round": 100}
SEED = 7


def _prepare(settings: Settings, ingest: bool) -> float:
    """Build the training set in ``settings``' home (first simulate, ingest and build the marts
    when ``ingest``); seconds taken."""
    from benchmarks.bench_dbt import _dbt
    from features import store as feature_store
    from lakehouse.ingestion import ingest_simulation

    started = time.perf_counter()
    if ingest:
        print("simulating and ingesting ...", flush=True)
        ingest_simulation(settings)
        print(f"building the marts ({time.perf_counter() - started:.0f} s) ...", flush=True)
        _dbt(settings, "build", "--exclude-resource-type", "unit_test")
    print(f"building the training set ({time.perf_counter() - started:.0f} s) ...", flush=True)
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    # Only the days the protocol reads (validation and test windows, the label delay and the
    # known-card memory before the test window): the whole history's point-in-time join at
    # 10x does not fit in memory on one 24 GiB machine.
    recent_days = labelled_days_needed(settings) + settings.known_card_memory_days
    frame = feature_store.build_training_set(store, settings, recent_days=recent_days)
    feature_store.write_training_set(settings, frame)
    return time.perf_counter() - started


def _worker_peak_mib() -> float:
    """Peak resident memory of the calling process (run on each dask worker).

    VmHWM, not getrusage's ru_maxrss: a worker process is started from the driver, and
    ru_maxrss keeps the parent's peak across the exec, VmHWM belongs to the new process alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _differing(trees: list[str], others: list[str]) -> int:
    """How many trees differ as text (splits, thresholds, leaf values to 6 digits)."""
    return sum(a != b for a, b in zip(trees, others, strict=True))


def main(
    scale: int = 1,
    home: Path | None = None,
    repeat: int = 3,
    prepare: bool = False,
    ingest: bool = False,
) -> dict:
    """Fit the XGBoost candidate in one process and on dask; compare AP, wall time, memory."""
    base = get_settings()
    workdir = None if home or scale == 1 else Path(tempfile.mkdtemp(prefix="fraudops-bench-dask-"))
    settings = get_settings(
        home=home or (workdir / "var" if workdir else base.home),
        sim_customers=base.sim_customers * scale,
        sim_terminals=base.sim_terminals * scale,
    )
    try:
        ingest = ingest or bool(workdir)
        prepare_seconds = _prepare(settings, ingest) if ingest or prepare else 0.0
        data = load_training_set(settings)
        splits = make_splits(data.frame, settings)
        train, test = splits.train, splits.test_frame
        print(f"training window: {len(train):,} rows; test window {len(test):,}", flush=True)
        with PeakMemory() as local_memory:
            local_seconds, local = median_time(lambda: train_xgboost(train, PARAMS, SEED), repeat)
        with dask_client(settings) as client, PeakMemory() as driver_memory:
            dask_seconds, distributed = median_time(
                lambda: train_xgboost_dask(train, PARAMS, SEED, client), repeat
            )
            worker_peaks = client.run(_worker_peak_mib)
        # The workers read the window's days themselves: a cluster of its own, so that the
        # workers' peaks are this path's; the driver's growth over what it already holds.
        split = protocol_splits(data.frame, settings)[1]
        with dask_client(settings) as client, PeakMemory() as table_memory:
            held_mib = table_memory.peak_mib
            table_seconds, from_table = median_time(
                lambda: train_xgboost_dask_from_table(
                    settings, split.train_start, split.train_end, PARAMS, SEED, client
                ),
                repeat,
            )
            table_worker_peaks = client.run(_worker_peak_mib)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    local_scores, dask_scores = local.predict_proba(test), distributed.predict_proba(test)
    table_scores = from_table.predict_proba(test)
    local_ap = average_precision_score(test["is_fraud"], local_scores)
    dask_ap = average_precision_score(test["is_fraud"], dask_scores)
    table_ap = average_precision_score(test["is_fraud"], table_scores)
    local_trees = local.estimator.get_dump()
    figures = {
        "scale": scale,
        "training_rows": len(train),
        "test_rows": len(test),
        "params": PARAMS,
        "dask_workers": len(worker_peaks),
        "local_average_precision": round(float(local_ap), 4),
        "dask_average_precision": round(float(dask_ap), 4),
        "average_precision_difference": round(float(dask_ap - local_ap), 4),
        "differing_trees": _differing(local_trees, distributed.estimator.get_dump()),
        "max_abs_score_difference": float(abs(dask_scores - local_scores).max()),
        "from_table_average_precision": round(float(table_ap), 4),
        "from_table_average_precision_difference": round(float(table_ap - local_ap), 4),
        "from_table_differing_trees": _differing(local_trees, from_table.estimator.get_dump()),
        "from_table_max_abs_score_difference": float(abs(table_scores - local_scores).max()),
        "from_table_fit_seconds_median": round(table_seconds, 2),
        "from_table_driver_growth_mib": round(table_memory.peak_mib - held_mib),
        "from_table_worker_peak_rss_mib": {w: round(v) for w, v in table_worker_peaks.items()},
        "local_fit_seconds_median": round(local_seconds, 2),
        "dask_fit_seconds_median": round(dask_seconds, 2),
        "dask_to_local_time_ratio": round(dask_seconds / local_seconds, 2),
        "local_peak_rss_mib": round(local_memory.peak_mib),
        "dask_driver_peak_rss_mib": round(driver_memory.peak_mib),
        "dask_worker_peak_rss_mib": {w: round(v) for w, v in worker_peaks.items()},
        "prepare_seconds": round(prepare_seconds, 1),
        "repeat": repeat,
        "target": "dask AP within 0.005 of the single-process model",
        "cpu_count": os.cpu_count(),
        "load_average_1min_end": round(os.getloadavg()[0], 2),
    }
    print(
        f"xgboost on {figures['training_rows']:,} rows (scale {scale}): single process "
        f"{local_seconds:.1f} s, AP {local_ap:.4f}; dask ({figures['dask_workers']} workers) "
        f"{dask_seconds:.1f} s ({figures['dask_to_local_time_ratio']}x), AP {dask_ap:.4f} "
        f"(difference {figures['average_precision_difference']:+.4f}, target within 0.005; "
        f"{figures['differing_trees']} of {len(local_trees)} trees differ); "
        f"peak RSS per worker {sorted(figures['dask_worker_peak_rss_mib'].values())} MiB; "
        f"workers reading the table {table_seconds:.1f} s, AP {table_ap:.4f}, driver "
        f"+{figures['from_table_driver_growth_mib']} MiB, peak RSS per worker "
        f"{sorted(figures['from_table_worker_peak_rss_mib'].values())} MiB"
    )
    write_figures("distributed" if scale == 1 else f"distributed_scale{scale}", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="Multiply customers and terminals.")
    parser.add_argument("--home", type=Path, help="A runtime folder with a built training set.")
    parser.add_argument("--repeat", type=int, default=3, help="Fits of each kind to time.")
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="Build the training set in --home first (from its marts).",
    )
    parser.add_argument(
        "--ingest",
        action="store_true",
        help="Simulate and ingest --scale into --home, build the marts and training set first.",
    )
    args = parser.parse_args()
    main(args.scale, args.home, args.repeat, args.prepare, args.ingest)
