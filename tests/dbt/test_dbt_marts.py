"""The dbt marts equal the reference features (features/definitions.py) and follow the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from features.definitions import as_of_timestamps, customer_features, terminal_features
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from lakehouse import delta
from tests.dbt.conftest import DUPLICATE_AMOUNT, NEGATIVE_AMOUNT_ID, UNKNOWN_CUSTOMER_ID

TS = pa.timestamp("us", tz="UTC")
ENTITY_SCHEMA = [("feature_timestamp", TS), ("feature_date", pa.date32())]


def _read(settings, layer: str, name: str) -> pd.DataFrame:
    return delta.read_table(settings.table_uri(layer, name)).to_pandas()


def _reference(settings):
    tx = _read(settings, "raw", "transactions")
    reports = _read(settings, "raw", "fraud_reports")
    as_of = as_of_timestamps(tx["tx_date"].min(), tx["tx_date"].max())
    customers = _read(settings, "raw", "customers")["customer_id"]
    terminals = _read(settings, "raw", "terminals")["terminal_id"]
    return (
        customer_features(tx, customers, as_of),
        terminal_features(tx, reports, terminals, as_of, settings.label_delay_days),
    )


def assert_features_equal(got: pd.DataFrame, expected: pd.DataFrame, key: str, features) -> None:
    """Same rows and keys; counts exact, averages and ratios within 1e-9."""
    got = got.sort_values([key, "feature_timestamp"], ignore_index=True)
    assert len(got) == len(expected)
    assert (got[key].to_numpy() == expected[key].to_numpy()).all()
    assert (got["feature_timestamp"].to_numpy() == expected["feature_timestamp"].to_numpy()).all()
    for column in features:
        if "_nb_tx_" in column:
            assert (got[column].to_numpy() == expected[column].to_numpy()).all(), column
        else:
            np.testing.assert_allclose(got[column], expected[column], rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def reference(dbt_lakehouse):
    return _reference(dbt_lakehouse)


def test_customer_features_equal_the_reference(dbt_lakehouse, reference):
    got = _read(dbt_lakehouse, "marts", "customer_features")
    assert_features_equal(got, reference[0], "customer_id", CUSTOMER_FEATURES)
    # Not vacuous: the tiny simulation has customers with transactions in every window.
    assert (got["customer_id_nb_tx_1day_window"] > 0).any()


def test_terminal_features_equal_the_reference(dbt_lakehouse, reference):
    got = _read(dbt_lakehouse, "marts", "terminal_features")
    assert_features_equal(got, reference[1], "terminal_id", TERMINAL_FEATURES)
    assert (got["terminal_id_risk_30day_window"] > 0).any()


def test_feature_rows_cover_every_entity_from_the_second_day_to_the_day_after_the_last(
    dbt_lakehouse,
):
    got = _read(dbt_lakehouse, "marts", "customer_features")
    first = dbt_lakehouse.sim_start_date
    days = sorted(got["feature_date"].unique())
    assert days[0] == first + pd.Timedelta(days=1)
    assert days[-1] == dbt_lakehouse.sim_end_date + pd.Timedelta(days=1)
    assert len(got) == dbt_lakehouse.sim_customers * dbt_lakehouse.sim_days
    midnight = pd.to_datetime(got["feature_date"]).dt.tz_localize("UTC")
    assert (got["feature_timestamp"] == midnight).all()


def test_labelled_transactions_carry_the_amounts_and_known_labels(dbt_lakehouse):
    got = _read(dbt_lakehouse, "marts", "labelled_transactions").sort_values(
        "transaction_id", ignore_index=True
    )
    tx = _read(dbt_lakehouse, "raw", "transactions").sort_values(
        "transaction_id", ignore_index=True
    )
    reports = _read(dbt_lakehouse, "raw", "fraud_reports").set_index("transaction_id")
    assert (got["transaction_id"].to_numpy() == tx["transaction_id"].to_numpy()).all()
    assert (got["tx_amount"].to_numpy() == tx["tx_amount"].to_numpy()).all()
    is_fraud = tx["transaction_id"].isin(reports.index)
    assert (got["is_fraud"].to_numpy() == is_fraud.astype("int8").to_numpy()).all()
    scenario = tx["transaction_id"].map(reports["fraud_scenario"]).fillna(0).astype("int8")
    assert (got["fraud_scenario"].to_numpy() == scenario.to_numpy()).all()
    delay = pd.Timedelta(days=dbt_lakehouse.label_delay_days)
    assert (got["label_available_at"] == tx["tx_datetime"] + delay).all()
    assert got["is_fraud"].sum() > 0


@pytest.mark.parametrize(
    ("name", "key", "features", "partition"),
    [
        ("customer_features", "customer_id", CUSTOMER_FEATURES, "feature_month"),
        ("terminal_features", "terminal_id", TERMINAL_FEATURES, "feature_month"),
    ],
)
def test_feature_marts_follow_the_contract_schema(dbt_lakehouse, name, key, features, partition):
    table = DeltaTable(dbt_lakehouse.table_uri("marts", name))
    schema = table.schema().to_arrow()
    expected = (
        [(key, pa.int64()), *ENTITY_SCHEMA]
        + [(f, pa.int64() if "_nb_tx_" in f else pa.float64()) for f in features]
        + [(partition, pa.date32())]
    )
    assert [(f.name, pa.field(f).type) for f in schema] == expected
    assert table.metadata().partition_columns == [partition]


def test_labelled_transactions_follow_the_contract_schema(dbt_lakehouse):
    table = DeltaTable(dbt_lakehouse.table_uri("marts", "labelled_transactions"))
    types = {f.name: pa.field(f).type for f in table.schema().to_arrow()}
    assert types == {
        "transaction_id": pa.int64(),
        "tx_datetime": TS,
        "tx_date": pa.date32(),
        "customer_id": pa.int64(),
        "terminal_id": pa.int64(),
        "tx_amount": pa.float64(),
        "is_fraud": pa.int8(),
        "fraud_scenario": pa.int8(),
        "label_available_at": TS,
        "tx_month": pa.date32(),
    }
    assert table.metadata().partition_columns == ["tx_month"]


def test_quarantined_rows_never_reach_the_marts(dbt_lakehouse):
    quarantine = _read(dbt_lakehouse, "quarantine", "transactions")
    keys = set(quarantine["record_key"])
    assert {str(UNKNOWN_CUSTOMER_ID), str(NEGATIVE_AMOUNT_ID)} <= keys
    labelled = _read(dbt_lakehouse, "marts", "labelled_transactions")
    assert not labelled["transaction_id"].isin([UNKNOWN_CUSTOMER_ID, NEGATIVE_AMOUNT_ID]).any()
    # The duplicate of a valid id was quarantined: only the first occurrence's amount is kept.
    assert not np.isclose(labelled["tx_amount"], DUPLICATE_AMOUNT).any()
    assert labelled["transaction_id"].is_unique
    customers = set(_read(dbt_lakehouse, "marts", "customer_features")["customer_id"])
    assert 999_999 not in customers
