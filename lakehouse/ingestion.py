"""Ingestion of the landed extracts into the raw Delta tables, with quarantine.

Plain functions over a :class:`Lakehouse`; Dagster assets wrap them. A call covers a list of
days and makes one Delta commit per table, so a 183-day backfill is a single atomic write and a
re-run of any day replaces exactly that day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudops.settings import Settings
from lakehouse import delta
from lakehouse.simulator import SimulatorConfig
from lakehouse.source import LandingSource
from lakehouse.validation import (
    FRAUD_REPORTS,
    QUARANTINE_SCHEMA,
    TRANSACTIONS,
    FeedSpec,
    validate,
)

RAW_SCHEMAS = {
    "transactions": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("tx_datetime", pa.timestamp("us", tz="UTC")),
            ("customer_id", pa.int64()),
            ("terminal_id", pa.int64()),
            ("tx_amount", pa.float64()),
            ("tx_date", pa.date32()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
    "fraud_reports": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("terminal_id", pa.int64()),
            ("fraud_scenario", pa.int8()),
            ("reported_at", pa.timestamp("us", tz="UTC")),
            ("report_date", pa.date32()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
}
PARTITION_COLUMNS = {"transactions": "tx_date", "fraud_reports": "report_date"}
SPECS: dict[str, FeedSpec] = {"transactions": TRANSACTIONS, "fraud_reports": FRAUD_REPORTS}


def simulator_config(settings: Settings) -> SimulatorConfig:
    """The simulator configuration that the settings describe."""
    return SimulatorConfig(
        n_customers=settings.sim_customers,
        n_terminals=settings.sim_terminals,
        start_date=settings.sim_start_date,
        n_days=settings.sim_days,
        radius=settings.sim_radius,
        seed=settings.sim_seed,
        label_delay_days=settings.label_delay_days,
    )


@dataclass
class Lakehouse:
    """Where the raw and quarantine tables live and where extracts come from."""

    settings: Settings

    @property
    def source(self) -> LandingSource:
        """The landing zone of the source system."""
        return LandingSource(
            self.settings.landing_path,
            simulator_config(self.settings),
            generate_missing=self.settings.source == "simulator",
        )

    def raw_uri(self, feed: str) -> str:
        """URI of the raw Delta table of ``feed``."""
        return self.settings.table_uri("raw", feed)

    def quarantine_uri(self, feed: str) -> str:
        """URI of the quarantine Delta table of ``feed``."""
        return self.settings.table_uri("quarantine", feed)

    @property
    def storage_options(self) -> dict[str, str]:
        """deltalake storage options."""
        return self.settings.storage_options


@dataclass
class IngestionReport:
    """What one ingestion call wrote."""

    feed: str
    days: list[dt.date]
    rows: int = 0
    quarantined: int = 0
    table_version: int = -1
    quarantine_version: int = -1
    reasons: dict[str, int] = field(default_factory=dict)

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
) -> IngestionReport:
    """Validate the extracts of ``feed`` for ``days`` and replace those raw partitions."""
    if feed not in SPECS:
        raise ValueError(f"unknown feed {feed!r}; expected one of {sorted(SPECS)}")
    days = sorted(set(days))
    if not days:
        raise ValueError("ingest_feed needs at least one day")
    now = now or dt.datetime.now(dt.UTC)
    source = lakehouse.source
    source.ensure_range(days[0], days[-1])
    known = _known_ids(lakehouse)
    report = IngestionReport(feed=feed, days=days)
    valid_parts: list[pd.DataFrame] = []
    quarantine_parts: list[pa.Table] = []
    partition_col = PARTITION_COLUMNS[feed]
    for i, day in enumerate(days, 1):
        result = validate(source.read(feed, day), SPECS[feed], day, known_ids=known, now=now)
        frame = result.valid
        frame[partition_col] = day
        valid_parts.append(frame)
        quarantine_parts.append(result.quarantined)
        report.rows += len(frame)
        report.quarantined += result.quarantined.num_rows
        if progress and (i % 30 == 0 or i == len(days)):
            progress(f"{feed}: validated {i}/{len(days)} days, {report.rows:,} rows")
    data = pd.concat(valid_parts, ignore_index=True)
    data["ingested_at"] = pd.Timestamp(now)
    table = pa.Table.from_pandas(data, schema=RAW_SCHEMAS[feed], preserve_index=False)
    report.table_version = delta.replace_partitions(
        lakehouse.raw_uri(feed), table, partition_col, days, lakehouse.storage_options
    )
    quarantined = (
        pa.concat_tables(quarantine_parts) if quarantine_parts else QUARANTINE_SCHEMA.empty_table()
    )
    report.quarantine_version = delta.replace_partitions(
        lakehouse.quarantine_uri(feed),
        quarantined,
        "partition_date",
        days,
        lakehouse.storage_options,
    )
    for reason in quarantined.column("reason").to_pylist():
        report.reasons[reason] = report.reasons.get(reason, 0) + 1
    return report


def ingest_simulation(settings: Settings) -> Lakehouse:
    """Ingest the master data and every simulated day of both feeds of ``settings``."""
    lakehouse = Lakehouse(settings)
    for name in ("customers", "terminals"):
        ingest_master_data(lakehouse, name)
    days = [settings.sim_start_date + dt.timedelta(days=i) for i in range(settings.sim_days)]
    for feed in ("transactions", "fraud_reports"):
        ingest_feed(lakehouse, feed, days)
    return lakehouse
