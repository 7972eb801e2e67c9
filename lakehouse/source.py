"""The source system's extracts: daily Parquet files in a landing zone.

The simulator plays the upstream card-payment system. It *lands* one file per feed and day
(``transactions/date=YYYY-MM-DD``, ``fraud_reports/date=YYYY-MM-DD``) plus master data; the
ingestion reads only these files. In ``simulator`` mode a missing extract is produced by the
simulator on request (the source system delivering it); in ``landing`` mode a missing extract
is an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.simulator import FRAUD_REPORT_SCHEMA, Simulator, SimulatorConfig

FEEDS = ("transactions", "fraud_reports")


class MissingExtractError(FileNotFoundError):
    """A daily extract that the ingestion needs has not landed."""


def extract_path(landing: Path, feed: str, day: dt.date) -> Path:
    """Path of the extract of ``feed`` for ``day``."""
    return landing / feed / f"date={day.isoformat()}" / "part-0.parquet"


def master_path(landing: Path, name: str) -> Path:
    """Path of a master-data extract (``customers`` or ``terminals``)."""
    return landing / f"{name}.parquet"


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a file


@dataclass
class LandingSummary:
    """What a call to :func:`land_range` wrote."""

    days: int = 0
    transactions: int = 0
    frauds: int = 0
    reports: int = 0


def land_range(
    simulator: Simulator,
    landing: Path,
    start: dt.date,
    end: dt.date,
    progress: Callable[[dt.date, LandingSummary], None] | None = None,
) -> LandingSummary:
    """Land master data and both feeds for every day from ``start`` to ``end`` (inclusive).

    The fraud reports visible on a day are the frauds of ``label_delay_days`` earlier, so days
    before ``start`` are simulated as needed; report partitions before any fraud could have been
    reported are landed empty, so the feed has no gaps.
    """
    cfg = simulator.config
    delay = dt.timedelta(days=cfg.label_delay_days)
    _write(simulator.customers(), master_path(landing, "customers"))
    _write(simulator.terminals(), master_path(landing, "terminals"))
    summary = LandingSummary()
    first = max(cfg.start_date, start - delay)
    for report_day in _dates(start, min(end, first + delay - dt.timedelta(days=1))):
        if report_day - delay < cfg.start_date:
            _write(
                FRAUD_REPORT_SCHEMA.empty_table(),
                extract_path(landing, "fraud_reports", report_day),
            )
    for sim in simulator.days(first, end):
        if sim.day >= start:
            _write(sim.transactions, extract_path(landing, "transactions", sim.day))
            summary.days += 1
            summary.transactions += sim.transactions.num_rows
            summary.frauds += sim.frauds.num_rows
        report_day = sim.day + delay
        if start <= report_day <= end:
            _write(sim.fraud_reports, extract_path(landing, "fraud_reports", report_day))
            summary.reports += sim.frauds.num_rows
        if progress and sim.day >= start:
            progress(sim.day, summary)
    return summary


def _dates(start: dt.date, end: dt.date) -> Iterable[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


class LandingSource:
    """Reads extracts from the landing zone, asking the simulator for missing ones if allowed."""

    def __init__(self, landing: Path, config: SimulatorConfig, generate_missing: bool = True):
        self.landing = landing
        self.config = config
        self.generate_missing = generate_missing
        self._simulator: Simulator | None = None

    @property
    def simulator(self) -> Simulator:
        """The simulator standing in for the upstream system (built on first use)."""
        if self._simulator is None:
            self._simulator = Simulator(self.config)
        return self._simulator

    def read(self, feed: str, day: dt.date) -> pa.Table:
        """The extract of ``feed`` for ``day``."""
        path = extract_path(self.landing, feed, day)
        if not path.exists():
            self._deliver(path, lambda: land_range(self.simulator, self.landing, day, day))
        return pq.read_table(path)

    def read_master(self, name: str) -> pa.Table:
        """The master-data extract ``name`` (``customers`` or ``terminals``)."""
        path = master_path(self.landing, name)
        if not path.exists():
            self._deliver(
                path,
                lambda: land_range(self.simulator, self.landing, *[self.config.start_date] * 2),
            )
        return pq.read_table(path)

    def ensure_range(self, start: dt.date, end: dt.date) -> None:
        """Make sure every extract of ``start``..``end`` has landed (one simulator pass)."""
        missing = [
            d
            for d in _dates(start, end)
            for feed in FEEDS
            if not extract_path(self.landing, feed, d).exists()
        ]
        if missing:
            self._deliver(
                extract_path(self.landing, "transactions", missing[0]),
                lambda: land_range(self.simulator, self.landing, min(missing), max(missing)),
            )

    def _deliver(self, path: Path, land: Callable[[], object]) -> None:
        if not self.generate_missing:
            raise MissingExtractError(
                f"extract {path} has not landed; land it first (fraudops simulate) or set "
                "FRAUDOPS_SOURCE=simulator to let the simulator deliver missing extracts"
            )
        land()
