"""Feast data sources: the dbt feature marts (Delta) and the request data of a transaction.

The mart locations depend on the settings (local folder or object store), so the sources are
built by a function instead of at import time; ``repo.py`` calls it for the Feast CLI.
"""

from dataclasses import dataclass

from feast import FileSource, RequestSource
from feast.data_format import DeltaFormat
from feast.field import Field
from feast.types import Float64, UnixTimestamp

from fraudops.settings import Settings

FEATURE_TIMESTAMP = "feature_timestamp"

transaction_request = RequestSource(
    name="transaction_request",
    schema=[Field(name="tx_datetime", dtype=UnixTimestamp), Field(name="tx_amount", dtype=Float64)],
    description="What a scoring request carries about the transaction itself.",
)


@dataclass(frozen=True)
class MartSources:
    """The Delta-backed batch sources of the feature views."""

    customer_features: FileSource
    terminal_features: FileSource


def mart_source(settings: Settings, name: str) -> FileSource:
    """A ``FileSource`` over the Delta table ``marts/<name>`` (timestamp: ``feature_timestamp``)."""
    return FileSource(
        name=f"marts_{name}",
        path=settings.table_uri("marts", name),
        file_format=DeltaFormat(),
        timestamp_field=FEATURE_TIMESTAMP,
        description=f"dbt mart {name}: one row per entity and as-of day (Delta).",
    )


def mart_sources(settings: Settings) -> MartSources:
    """The batch sources for ``settings``."""
    return MartSources(
        customer_features=mart_source(settings, "customer_features"),
        terminal_features=mart_source(settings, "terminal_features"),
    )
