"""Ingestion of all 183 reference partitions in one Dagster run: wall time and peak memory.

Target: <= 60 s wall. Baseline in the same run: the same days ingested one partition
per call (one Delta commit per day), as a per-partition backfill would.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import PeakMemory, write_figures
from fraudops.settings import get_settings
from lakehouse import delta
from lakehouse.ingestion import Lakehouse, ingest_feed, ingest_master_data
from lakehouse.simulator import Simulator, SimulatorConfig
from lakehouse.source import land_range


def _dagster_single_run(home: Path) -> tuple[float, float, object]:
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.partitions import partition_range_tags

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    os.environ["FRAUDOPS_HOME"] = str(home)
    settings = get_settings()
    job = build_definitions().resolve_job_def("ingest")
    tags = partition_range_tags(settings.sim_start_date, settings.sim_end_date)
    with dg.instance_for_test() as instance, PeakMemory() as memory:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - started
    assert result.success, "ingestion run failed"
    return wall, memory.peak_mib, result


def _per_day_baseline(home: Path) -> float:
    settings = get_settings(home=home)
    lakehouse = Lakehouse(settings)
    ingest_master_data(lakehouse, "customers")
    ingest_master_data(lakehouse, "terminals")
    started = time.perf_counter()
    day = settings.sim_start_date
    while day <= settings.sim_end_date:
        for feed in ("transactions", "fraud_reports"):
            ingest_feed(lakehouse, feed, [day])
        day += dt.timedelta(days=1)
    return time.perf_counter() - started


def main() -> dict:
    """Land the reference scale once, then time the single run and the per-day baseline."""
    previous = os.environ.get("FRAUDOPS_HOME")
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-ingest-"))
    try:
        single_home, baseline_home = root / "single", root / "per_day"
        settings = get_settings(home=single_home)
        started = time.perf_counter()
        land_range(
            Simulator(SimulatorConfig.from_settings(settings)),
            settings.landing_path,
            settings.sim_start_date,
            settings.sim_end_date,
        )
        land_seconds = time.perf_counter() - started
        shutil.copytree(settings.landing_path, baseline_home / "landing")
        wall, peak, _ = _dagster_single_run(single_home)
        n_rows = delta.read_table(
            settings.table_uri("raw", "transactions"), ["transaction_id"]
        ).num_rows
        baseline = _per_day_baseline(baseline_home)
    finally:
        if previous is None:
            os.environ.pop("FRAUDOPS_HOME", None)
        else:
            os.environ["FRAUDOPS_HOME"] = previous
        shutil.rmtree(root, ignore_errors=True)
    figures = {
        "partitions": settings.sim_days,
        "transactions": n_rows,
        "landing_seconds": round(land_seconds, 2),
        "single_run_wall_seconds": round(wall, 2),
        "single_run_peak_rss_mib": round(peak),
        "per_day_baseline_seconds": round(baseline, 2),
        "speedup_vs_per_day": round(baseline / wall, 1),
        "target": "<= 60 s wall for 183 partitions in one run",
    }
    print(
        f"ingestion: {settings.sim_days} partitions, {n_rows:,} transactions in one Dagster run: "
        f"{wall:.1f} s wall, peak RSS {peak:.0f} MiB\n"
        f"baseline one commit per day: {baseline:.1f} s ({figures['speedup_vs_per_day']}x slower "
        f"than the single run)"
    )
    write_figures("ingestion", figures)
    return figures


if __name__ == "__main__":
    main()
