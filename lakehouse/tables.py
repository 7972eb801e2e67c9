"""Where the lakehouse's raw, quarantine and ingestion-log tables live, and their raw schemas."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from fraudops.catalog import INGESTION_LOG
from fraudops.settings import Settings
from lakehouse.simulator import SimulatorConfig
from lakehouse.source import LandingSource
from lakehouse.validation import FRAUD_REPORTS, TRANSACTIONS, FeedSpec

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


@dataclass
class Lakehouse:
    """Where the raw and quarantine tables live and where extracts come from."""

    settings: Settings

    @property
    def source(self) -> LandingSource:
        """The landing zone of the source system."""
        return LandingSource(
            self.settings.landing_path,
            SimulatorConfig.from_settings(self.settings),
            generate_missing=self.settings.source == "simulator",
        )

    def raw_uri(self, feed: str) -> str:
        """URI of the raw Delta table of ``feed``."""
        return self.settings.table_uri("raw", feed)

    def quarantine_uri(self, feed: str) -> str:
        """URI of the quarantine Delta table of ``feed``."""
        return self.settings.table_uri("quarantine", feed)

    @property
    def log_uri(self) -> str:
        """URI of the ingestion log: which days of which feed started and completed."""
        return INGESTION_LOG.uri(self.settings)

    @property
    def storage_options(self) -> dict[str, str]:
        """deltalake storage options."""
        return self.settings.storage_options
