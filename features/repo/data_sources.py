"""Feast data sources: the dbt feature marts (Delta) and the request data of a transaction.

The mart locations depend on the settings (local folder or object store), so the sources are
built by a function instead of at import time; ``repo.py`` calls it for the Feast CLI.

Feast stamps every data source object with the time it was built, and a feature view's spec
embeds its batch source, stamps included: a definition rebuilt by ``feast plan`` then differs
from the registered one by those stamps, which Feast 0.67 prints as a protobuf diff as soon as
the view differs in anything else (its materialization intervals, once materialized). The
sources are therefore stamped with a fixed time, ``DEFINED_AT``: built twice, they are the
same definition. The registry's own data-source rows keep their real creation times.
"""

import datetime as dt
from dataclasses import dataclass

from feast import FileSource, RequestSource
from feast.data_format import DeltaFormat
from feast.data_source import DataSource
from feast.field import Field
from feast.types import Float64, UnixTimestamp

from fraudops.settings import Settings

FEATURE_TIMESTAMP = "feature_timestamp"
# The stamp of every source definition (see the module docstring): not a real creation time.
DEFINED_AT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _defined(source: DataSource) -> DataSource:
    """``source`` with the fixed definition stamps instead of the time it was built."""
    source.created_timestamp = DEFINED_AT
    source.last_updated_timestamp = DEFINED_AT
    return source


def transaction_request_source() -> RequestSource:
    """What a scoring request carries about the transaction itself."""
    return _defined(
        RequestSource(
            name="transaction_request",
            schema=[
                Field(name="tx_datetime", dtype=UnixTimestamp),
                Field(name="tx_amount", dtype=Float64),
            ],
            description="What a scoring request carries about the transaction itself.",
        )
    )


transaction_request = transaction_request_source()


@dataclass(frozen=True)
class MartSources:
    """The Delta-backed batch sources of the feature views."""

    customer_features: FileSource
    terminal_features: FileSource

    def all(self) -> list[FileSource]:
        """Both sources."""
        return [self.customer_features, self.terminal_features]


def mart_source(settings: Settings, name: str) -> FileSource:
    """A ``FileSource`` over the Delta table ``marts/<name>`` (timestamp: ``feature_timestamp``)."""
    return _defined(
        FileSource(
            name=f"marts_{name}",
            path=settings.table_uri("marts", name),
            file_format=DeltaFormat(),
            timestamp_field=FEATURE_TIMESTAMP,
            description=f"dbt mart {name}: one row per entity and as-of day (Delta).",
        )
    )


def mart_sources(settings: Settings) -> MartSources:
    """The batch sources for ``settings``."""
    return MartSources(
        customer_features=mart_source(settings, "customer_features"),
        terminal_features=mart_source(settings, "terminal_features"),
    )
