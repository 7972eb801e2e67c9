"""What a retraining step costs: wall time, CPU seconds, peak resident memory and rows.

A :class:`CostMeter` measures the block it wraps in the current process (every thread counts:
XGBoost's and torch's workers too); :func:`total` adds the steps of a run into one figure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

# How often the meter samples resident memory: short enough to see a training step's peak.
SAMPLE_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Cost:
    """The resources one step (or a whole run) used."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    rows: int

    def as_metrics(self, prefix: str = "cost_") -> dict[str, float]:
        """The figures as MLflow metrics (peak memory in MiB)."""
        return {
            f"{prefix}wall_seconds": round(self.wall_seconds, 3),
            f"{prefix}cpu_seconds": round(self.cpu_seconds, 3),
            f"{prefix}peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
            f"{prefix}rows": float(self.rows),
        }

    @classmethod
    def from_metrics(cls, metrics: dict[str, float], prefix: str = "cost_") -> Cost:
        """The cost :meth:`as_metrics` wrote (e.g. read back from a step's metadata)."""
        return cls(
            wall_seconds=float(metrics[f"{prefix}wall_seconds"]),
            cpu_seconds=float(metrics[f"{prefix}cpu_seconds"]),
            peak_rss_bytes=int(float(metrics[f"{prefix}peak_rss_mib"]) * 2**20),
            rows=int(metrics[f"{prefix}rows"]),
        )

    def summary(self) -> str:
        """One line for a log."""
        return (
            f"{self.wall_seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU, "
            f"peak {self.peak_rss_bytes / 2**20:,.0f} MiB, {self.rows:,} rows"
        )


class CostMeter:
    """Measure the block it wraps; set ``rows`` inside it, read ``cost`` after it."""

    def __init__(self, rows: int = 0) -> None:
        self.rows = rows
        self.cost: Cost | None = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> CostMeter:
        self._peak = self._process.memory_info().rss
        times = self._process.cpu_times()
        self._cpu = times.user + times.system
        self._wall = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, name="cost-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        times = self._process.cpu_times()
        peak = max(self._peak, self._process.memory_info().rss)
        self.cost = Cost(
            wall_seconds=time.perf_counter() - self._wall,
            cpu_seconds=times.user + times.system - self._cpu,
            peak_rss_bytes=int(peak),
            rows=int(self.rows),
        )


def total(costs: Iterable[Cost], wall_seconds: float | None = None) -> Cost:
    """Several steps as one: CPU summed, the highest peak, the most rows any step handled.

    ``wall_seconds`` is the run's elapsed time when known (steps may overlap or wait);
    otherwise the steps' wall times are summed.
    """
    costs = list(costs)
    return Cost(
        wall_seconds=wall_seconds
        if wall_seconds is not None
        else sum(c.wall_seconds for c in costs),
        cpu_seconds=sum(c.cpu_seconds for c in costs),
        peak_rss_bytes=max((c.peak_rss_bytes for c in costs), default=0),
        rows=max((c.rows for c in costs), default=0),
    )
