"""Ingestion of the landed extracts into the raw Delta tables, with quarantine.

Plain functions over a :class:`Lakehouse`; Dagster assets wrap them. A call covers a list of
days and makes one Delta commit per table, so a 183-day backfill is a single atomic write and a
re-run of any day replaces exactly that day. The guarantees (no silent loss, one row per
transaction id, completeness across the two tables) are in docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudops.settings import Settings
from lakehouse import delta, ingestion_log
from lakehouse.errors import ConcurrentIngestionError, IngestionFailedError, VolumeDropError
from lakehouse.keys import KeyLedger
from lakehouse.source import extract_path
from lakehouse.tables import PARTITION_COLUMNS, RAW_SCHEMAS, SPECS, Lakehouse
from lakehouse.validation import CheckedBatch, check
from lakehouse.volume import VolumeDrop, find_drop

__all__ = [
    "PARTITION_COLUMNS",
    "RAW_SCHEMAS",
    "SPECS",
    "ConcurrentIngestionError",
    "IngestionFailedError",
    "IngestionReport",
    "Lakehouse",
    "VolumeDropError",
    "ingest_feed",
    "ingest_master_data",
    "ingest_simulation",
]

# Attempts of a whole ingestion call when a commit loses to a concurrent writer.
MAX_ATTEMPTS = 3


@dataclass
class IngestionReport:
    """What one ingestion call wrote, and which days it could not."""

    feed: str
    days: list[dt.date]
    rows: int = 0
    quarantined: int = 0
    table_version: int = -1
    quarantine_version: int = -1
    reasons: dict[str, int] = field(default_factory=dict)
    # Days an interrupted earlier run left incomplete, completed by this call.
    resumed: list[dt.date] = field(default_factory=list)
    # Days the volume guard would have refused, written because the call was forced.
    forced: list[VolumeDrop] = field(default_factory=list)
    # Days not written (their partitions are unchanged), with what went wrong.
    failures: dict[dt.date, str] = field(default_factory=dict)
    # The failures that are days the volume guard refused.
    volume_drops: list[VolumeDrop] = field(default_factory=list)
    attempts: int = 1

    @property
    def quarantine_ratio(self) -> float:
        """Share of incoming rows that were quarantined."""
        total = self.rows + self.quarantined
        return self.quarantined / total if total else 0.0


def ingest_master_data(lakehouse: Lakehouse, name: str) -> tuple[int, int]:
    """Copy master data ``customers`` or ``terminals`` into its raw table; (rows, version)."""
    table = lakehouse.source.read_master(name)
    version = delta.overwrite(lakehouse.raw_uri(name), table, lakehouse.storage_options)
    return table.num_rows, version


def _known_ids(lakehouse: Lakehouse) -> dict[str, np.ndarray]:
    ids = {}
    for name, col in (("customers", "customer_id"), ("terminals", "terminal_id")):
        uri = lakehouse.raw_uri(name)
        table = (
            delta.read_table(uri, [col], storage_options=lakehouse.storage_options)
            if delta.table_exists(uri, lakehouse.storage_options)
            else lakehouse.source.read_master(name).select([col])
        )
        ids[col] = table.column(col).to_numpy()
    return ids


def ingest_feed(
    lakehouse: Lakehouse,
    feed: str,
    days: Sequence[dt.date],
    progress: Callable[[str], None] | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
) -> IngestionReport:
    """Validate the extracts of ``feed`` for ``days`` and replace those raw partitions.

    Days an interrupted earlier run left incomplete are ingested too. A day whose extract
    cannot be read, or which the volume guard refuses (unless ``force``), keeps its partitions
    while the other days land; the call then raises :class:`IngestionFailedError`
    (:class:`VolumeDropError` when every such day was a volume drop).
    """
    if feed not in SPECS:
        raise ValueError(f"unknown feed {feed!r}; expected one of {sorted(SPECS)}")
    requested = sorted(set(days))
    if not requested:
        raise ValueError("ingest_feed needs at least one day")
    now = now or dt.datetime.now(dt.UTC)
    resumed = [d for d in ingestion_log.incomplete_days(lakehouse, feed) if d not in requested]
    if resumed and progress:
        progress(f"{feed}: completing {len(resumed)} day(s) an earlier run left incomplete")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            report = _ingest(lakehouse, feed, requested, resumed, progress, now, force)
            break
        except delta.PartitionConflictError as exc:
            if attempt == MAX_ATTEMPTS:
                raise ConcurrentIngestionError(feed, attempt, exc) from exc
            if progress:
                progress(f"{feed}: {exc}; attempt {attempt + 1} of {MAX_ATTEMPTS}")
            # Jitter, so two writers that collided do not collide again in lockstep.
            time.sleep(random.uniform(0.05, 0.25) * attempt)
    report.attempts = attempt
    if report.failures:
        only_drops = len(report.volume_drops) == len(report.failures)
        raise VolumeDropError(report) if only_drops else IngestionFailedError(report)
    return report


def _check_days(
    lakehouse: Lakehouse, feed: str, days: Sequence[dt.date], report: IngestionReport
) -> dict[dt.date, CheckedBatch]:
    """Read and check each day's extract; a day that fails is reported, not fatal."""
    source = lakehouse.source
    known = _known_ids(lakehouse)
    checked = {}
    for day in days:
        path = extract_path(lakehouse.settings.landing_path, feed, day)
        # Whatever goes wrong with one extract is that day's failure, not the other days'.
        try:
            checked[day] = check(source.read(feed, day), SPECS[feed], day, known_ids=known)
        except Exception as exc:
            report.failures[day] = f"extract {path}: {type(exc).__name__}: {exc}"
    return checked


def _guard_volumes(
    lakehouse: Lakehouse,
    feed: str,
    checked: dict[dt.date, CheckedBatch],
    force: bool,
    report: IngestionReport,
) -> list[dt.date]:
    """The checked days the volume guard lets through (all of them, reported, when forced)."""
    settings = lakehouse.settings
    counts = delta.partition_row_counts(
        lakehouse.raw_uri(feed), PARTITION_COLUMNS[feed], lakehouse.storage_options
    )
    accepted = []
    for day in sorted(checked):
        rows = checked[day].passing
        drop = find_drop(
            feed, day, rows, counts, settings.volume_min_share, settings.volume_trailing_days
        )
        if drop is not None and not force:
            report.volume_drops.append(drop)
            report.failures[day] = str(drop)
            continue
        if drop is not None:
            report.forced.append(drop)
        # Later days of the run are compared with what this day will hold.
        counts[day] = rows
        accepted.append(day)
    return accepted


def _ingest(
    lakehouse: Lakehouse,
    feed: str,
    requested: list[dt.date],
    resumed: list[dt.date],
    progress: Callable[[str], None] | None,
    now: dt.datetime,
    force: bool,
) -> IngestionReport:
    source = lakehouse.source
    if source.generate_missing:
        source.ensure_range(requested[0], requested[-1])
    report = IngestionReport(feed=feed, days=[], resumed=resumed)
    checked = _check_days(lakehouse, feed, sorted({*requested, *resumed}), report)
    days = _guard_volumes(lakehouse, feed, checked, force, report)
    if not days:
        return report

    partition_col = PARTITION_COLUMNS[feed]
    raw_uri = lakehouse.raw_uri(feed)
    ledger = KeyLedger(raw_uri, SPECS[feed].key, partition_col, days, lakehouse.storage_options)
    valid_parts: list[pd.DataFrame] = []
    quarantine_parts: list[pa.Table] = []
    counts: dict[dt.date, tuple[int, int]] = {}
    for i, day in enumerate(days, 1):
        result = checked.pop(day).result(keys_taken=ledger.taken, now=now)
        frame = result.valid
        ledger.claim(frame[SPECS[feed].key].to_numpy())
        frame[partition_col] = day
        valid_parts.append(frame)
        quarantine_parts.append(result.quarantined)
        counts[day] = (len(frame), result.quarantined.num_rows)
        report.rows += len(frame)
        report.quarantined += result.quarantined.num_rows
        if progress and (i % 30 == 0 or i == len(days)):
            progress(f"{feed}: validated {i}/{len(days)} days, {report.rows:,} rows")
    data = pd.concat(valid_parts, ignore_index=True)
    data["ingested_at"] = pd.Timestamp(now)
    table = pa.Table.from_pandas(data, schema=RAW_SCHEMAS[feed], preserve_index=False)
    quarantined = pa.concat_tables(quarantine_parts)

    # Quarantine first, raw second, each day bracketed by log entries: a run stopped anywhere
    # in between leaves its days "started" without "complete", and the next run redoes them.
    run_id = uuid.uuid4().hex
    ingestion_log.record(lakehouse, feed, run_id, ingestion_log.STARTED, days)
    report.quarantine_version = delta.replace_partitions(
        lakehouse.quarantine_uri(feed),
        quarantined,
        "partition_date",
        days,
        lakehouse.storage_options,
    )
    report.table_version = delta.replace_partitions(
        raw_uri, table, partition_col, days, lakehouse.storage_options
    )
    ingestion_log.record(lakehouse, feed, run_id, ingestion_log.COMPLETE, days, counts)
    report.days = days
    for reason in quarantined.column("reason").to_pylist():
        report.reasons[reason] = report.reasons.get(reason, 0) + 1
    return report


def ingest_simulation(settings: Settings, force: bool = False) -> Lakehouse:
    """Ingest the master data and every simulated day of both feeds of ``settings``."""
    lakehouse = Lakehouse(settings)
    for name in ("customers", "terminals"):
        ingest_master_data(lakehouse, name)
    days = [settings.sim_start_date + dt.timedelta(days=i) for i in range(settings.sim_days)]
    failed: list[IngestionFailedError] = []
    for feed in ("transactions", "fraud_reports"):
        try:
            ingest_feed(lakehouse, feed, days, force=force)
        except IngestionFailedError as exc:
            failed.append(exc)
    if failed:
        raise failed[0]
    return lakehouse
