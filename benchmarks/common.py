"""Shared helpers of the benchmarks: timing, peak memory, and the JSON figures file."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from fraudops.settings import get_settings


def median_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls of ``fn`` and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


class PeakMemory:
    """Samples the process's resident memory in a thread; ``peak_mib`` after the block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        """Peak resident memory seen, in MiB."""
        return self.peak_bytes / 2**20


def write_figures(topic: str, figures: dict[str, Any]) -> Path:
    """Write a benchmark's figures to ``var/bench/<topic>.json`` and return the path."""
    out = get_settings().home / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{topic}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"figures written to {path}")
    return path
