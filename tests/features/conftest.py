"""Fixtures of the feature store tests: contract-exact marts built with the reference functions.

The dbt marts are the real inputs; these fixtures write the same Delta tables (schema of the
data contract, values of features/definitions.py) from the tiny lakehouse, so the feature store
domain
is tested on its own. ``write_marts`` is reusable by any test that needs marts.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from features.definitions import (
    as_of_timestamps,
    customer_features,
    terminal_features,
    transaction_features,
)
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings, get_settings
from lakehouse import delta

TS = pa.timestamp("us", tz="UTC")


def _feature_schema(key: str, features: list[str]) -> pa.Schema:
    fields = [pa.field(key, pa.int64()), pa.field("feature_timestamp", TS)]
    fields += [pa.field("feature_date", pa.date32())]
    fields += [pa.field(f, pa.int64() if "_nb_tx_" in f else pa.float64()) for f in features]
    return pa.schema(fields)


CUSTOMER_SCHEMA = _feature_schema("customer_id", CUSTOMER_FEATURES)
TERMINAL_SCHEMA = _feature_schema("terminal_id", TERMINAL_FEATURES)
LABELLED_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("tx_datetime", TS),
        ("tx_date", pa.date32()),
        ("customer_id", pa.int64()),
        ("terminal_id", pa.int64()),
        ("tx_amount", pa.float64()),
        ("tx_during_weekend", pa.int8()),
        ("tx_during_night", pa.int8()),
        ("is_fraud", pa.int8()),
        ("fraud_scenario", pa.int8()),
        ("label_available_at", TS),
    ]
)


def write_mart(settings: Settings, name: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
    """Write ``frame`` as the Delta mart ``name`` with the contract schema and partitioning."""
    partition = "tx_date" if "tx_date" in schema.names else "feature_date"
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    write_deltalake(
        settings.table_uri("marts", name), table, mode="overwrite", partition_by=[partition]
    )


def entity_marts(raw: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customer and terminal feature marts of the raw tables, per features/definitions.py."""
    read = lambda name: delta.read_table(raw.table_uri("raw", name)).to_pandas()  # noqa: E731
    tx, reports = read("transactions"), read("fraud_reports")
    as_of = as_of_timestamps(raw.sim_start_date, tx["tx_date"].max())
    customers = customer_features(tx, read("customers")["customer_id"], as_of)
    terminals = terminal_features(
        tx, reports, read("terminals")["terminal_id"], as_of, raw.label_delay_days
    )
    for frame in (customers, terminals):
        frame["feature_date"] = frame["feature_timestamp"].dt.date
    return customers, terminals


def labelled_mart(raw: Settings) -> pd.DataFrame:
    """The labelled transactions mart of the raw tables."""
    tx = delta.read_table(raw.table_uri("raw", "transactions")).to_pandas()
    reports = delta.read_table(raw.table_uri("raw", "fraud_reports")).to_pandas()
    request = transaction_features(tx["tx_datetime"], tx["tx_amount"])
    tx["tx_during_weekend"] = request["tx_during_weekend"]
    tx["tx_during_night"] = request["tx_during_night"]
    scenario = tx["transaction_id"].map(reports.set_index("transaction_id")["fraud_scenario"])
    tx["fraud_scenario"] = scenario.fillna(0).astype("int8")
    tx["is_fraud"] = (tx["fraud_scenario"] > 0).astype("int8")
    tx["label_available_at"] = tx["tx_datetime"] + pd.Timedelta(days=raw.label_delay_days)
    return tx


def write_marts(raw: Settings, out: Settings) -> None:
    """Build the three marts from ``raw``'s raw tables into ``out``'s lakehouse."""
    customers, terminals = entity_marts(raw)
    write_mart(out, "customer_features", customers, CUSTOMER_SCHEMA)
    write_mart(out, "terminal_features", terminals, TERMINAL_SCHEMA)
    write_mart(out, "labelled_transactions", labelled_mart(raw), LABELLED_SCHEMA)


@pytest.fixture(scope="session")
def tiny_marts_home(tiny_lakehouse, tmp_path_factory):
    """A lakehouse folder holding only the three marts of the tiny lakehouse (read-only)."""
    home = tmp_path_factory.mktemp("marts") / "var"
    write_marts(tiny_lakehouse.settings, get_settings(home=home))
    return home


@pytest.fixture
def feast_settings(tiny_lakehouse, tiny_marts_home, tmp_path) -> Settings:
    """Settings reading the tiny marts, with a fresh Feast project and files for this test."""
    raw = tiny_lakehouse.settings
    return get_settings(
        home=tmp_path / "var",
        lakehouse_uri=str(tiny_marts_home / "lakehouse"),
        sim_customers=raw.sim_customers,
        sim_terminals=raw.sim_terminals,
        sim_days=raw.sim_days,
        feast_project=f"t{uuid.uuid4().hex[:10]}",
    )


def last_mart_day(settings: Settings) -> dt.date:
    """The newest feature_date of the customer mart."""
    table = delta.read_table(settings.table_uri("marts", "customer_features"), ["feature_date"])
    return max(table.column("feature_date").to_pylist())
