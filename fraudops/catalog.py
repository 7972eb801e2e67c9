"""The table catalogue: every Delta table of the platform, by layer and name.

A table's URI comes from the settings (a local folder or an object store), so each entry
resolves it with :meth:`Table.uri`; nothing else spells a table's layer and name.
"""

from __future__ import annotations

from dataclasses import dataclass

from fraudops.settings import Settings


@dataclass(frozen=True)
class Table:
    """A Delta table of the lakehouse."""

    layer: str
    name: str

    def uri(self, settings: Settings) -> str:
        """Where the table lives under the settings' lakehouse root."""
        return settings.table_uri(self.layer, self.name)


RAW_TRANSACTIONS = Table("raw", "transactions")
RAW_FRAUD_REPORTS = Table("raw", "fraud_reports")
RAW_CUSTOMERS = Table("raw", "customers")
RAW_TERMINALS = Table("raw", "terminals")
QUARANTINE_TRANSACTIONS = Table("quarantine", "transactions")
QUARANTINE_FRAUD_REPORTS = Table("quarantine", "fraud_reports")
CUSTOMER_FEATURES_MART = Table("marts", "customer_features")
TERMINAL_FEATURES_MART = Table("marts", "terminal_features")
LABELLED_TRANSACTIONS_MART = Table("marts", "labelled_transactions")
TRAINING_SET = Table("features", "training_set")
BATCH_SCORES = Table("serving", "batch_scores")
# Which days of which feed started and completed ingestion (lakehouse/ingestion_log.py).
INGESTION_LOG = Table("ops", "ingestion_log")


@dataclass(frozen=True)
class PredictionLogTable(Table):
    """The prediction log, whose location ``FRAUDOPS_PREDICTION_LOG_TABLE`` may move."""

    def uri(self, settings: Settings) -> str:
        """Where the scoring service appends its predictions."""
        return settings.prediction_log_uri


# What the scoring service appends every scored transaction to (serving/runtime.py).
PREDICTION_LOG = PredictionLogTable("serving", "prediction_log")

# Every Delta table the platform writes, for housekeeping that must not miss one.
ALL_TABLES = (
    RAW_TRANSACTIONS,
    RAW_FRAUD_REPORTS,
    RAW_CUSTOMERS,
    RAW_TERMINALS,
    QUARANTINE_TRANSACTIONS,
    QUARANTINE_FRAUD_REPORTS,
    CUSTOMER_FEATURES_MART,
    TERMINAL_FEATURES_MART,
    LABELLED_TRANSACTIONS_MART,
    TRAINING_SET,
    BATCH_SCORES,
    PREDICTION_LOG,
    INGESTION_LOG,
)
