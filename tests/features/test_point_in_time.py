"""Point-in-time correctness of training sets, on crafted marts where a wrong join shows.

Every feature of entity e in the row stamped day d is 1000 * e + d.day, so a row's value names
the as-of day it came from: a join that leaks the next day's row (after the event) is caught.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from features import store as feature_store
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import get_settings
from lakehouse import delta

from .conftest import CUSTOMER_SCHEMA, LABELLED_SCHEMA, TERMINAL_SCHEMA, write_mart

DAYS = pd.date_range("2018-04-02", "2018-04-05", freq="D", tz="UTC")


def _entity_rows(key: str, features: list[str], rows: list[tuple[int, pd.Timestamp]]):
    frame = pd.DataFrame(rows, columns=[key, "feature_timestamp"])
    frame["feature_date"] = frame["feature_timestamp"].dt.date
    for name in features:
        value = 1000 * frame[key] + frame["feature_timestamp"].dt.day
        frame[name] = value if "_nb_tx_" in name else value.astype("float64")
    return frame


def _tx(tx_id: int, customer: int, terminal: int, when: str, fraud: int = 0) -> dict:
    ts = pd.Timestamp(when, tz="UTC")
    return {
        "transaction_id": tx_id,
        "tx_datetime": ts,
        "tx_date": ts.date(),
        "customer_id": customer,
        "terminal_id": terminal,
        "tx_amount": 10.0 * tx_id,
        "tx_during_weekend": int(ts.weekday() >= 5),
        "tx_during_night": int(ts.hour <= 6),
        "is_fraud": fraud,
        "fraud_scenario": fraud,
        "label_available_at": ts + pd.Timedelta(days=7),
    }


@pytest.fixture
def crafted(tmp_path):
    """Crafted marts and a store over them; returns (store, settings)."""
    settings = get_settings(home=tmp_path / "var", feast_project="pit")
    # Customer 2 has a row for the first day only: later transactions find it expired.
    customers = [(1, d) for d in DAYS] + [(2, DAYS[0])]
    write_mart(
        settings,
        "customer_features",
        _entity_rows("customer_id", CUSTOMER_FEATURES, customers),
        CUSTOMER_SCHEMA,
    )
    terminals = [(t, d) for t in (1, 2) for d in DAYS]
    write_mart(
        settings,
        "terminal_features",
        _entity_rows("terminal_id", TERMINAL_FEATURES, terminals),
        TERMINAL_SCHEMA,
    )
    labelled = pd.DataFrame(
        [
            _tx(1, 1, 1, "2018-04-03 23:59:59"),  # last instant of day 3: the row of 04-03
            _tx(2, 1, 1, "2018-04-04 00:00:00"),  # first instant of day 4: the row of 04-04
            _tx(3, 1, 2, "2018-04-05 12:00:00", fraud=1),  # newest fraud: labels known up to it
            _tx(4, 2, 1, "2018-04-04 10:00:00"),  # customer row of 04-02 is expired (TTL)
            _tx(5, 1, 1, "2018-04-01 10:00:00"),  # before the first feature row
            _tx(6, 3, 2, "2018-04-03 10:00:00"),  # unknown customer
            _tx(7, 1, 1, "2018-04-05 18:00:00"),  # label not known yet: excluded
        ]
    )
    write_mart(settings, "labelled_transactions", labelled, LABELLED_SCHEMA)
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    return store, settings


def test_training_rows_take_the_row_valid_at_their_time_never_a_later_one(crafted) -> None:
    store, settings = crafted
    frame = feature_store.build_training_set(store, settings).set_index("transaction_id")
    assert sorted(frame.index) == [1, 2, 3, 4, 5, 6]  # tx 7's label is not known yet
    expected_day = {1: 3, 2: 4, 3: 5}
    for tx_id, day in expected_day.items():
        row = frame.loc[tx_id]
        assert row[CUSTOMER_FEATURES].tolist() == [1000 * row["customer_id"] + day] * 6
        assert row[TERMINAL_FEATURES].tolist() == [1000 * row["terminal_id"] + day] * 6
        assert row["features_missing"] == 0


def test_expired_missing_and_unknown_entities_are_filled_with_zero_and_flagged(crafted) -> None:
    store, settings = crafted
    frame = feature_store.build_training_set(store, settings).set_index("transaction_id")
    # tx 4: the customer row expired, the terminal row of 04-04 is valid and kept.
    assert frame.loc[4, CUSTOMER_FEATURES].tolist() == [0] * 6
    assert frame.loc[4, TERMINAL_FEATURES].tolist() == [1004] * 6
    assert frame.loc[[4, 5, 6], "features_missing"].tolist() == [1, 1, 1]
    assert frame.loc[5, [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]].tolist() == [0] * 12
    assert frame.loc[6, CUSTOMER_FEATURES].tolist() == [0] * 6


def test_historical_features_give_nulls_for_expired_rows_before_the_fill(crafted) -> None:
    store, settings = crafted
    entities = feature_store.labelled_entities(settings).set_index("transaction_id", drop=False)
    raw = feature_store.historical_features(store, entities)
    assert raw.loc[4, CUSTOMER_FEATURES].isna().all()
    assert raw.loc[5, TERMINAL_FEATURES].isna().all()
    assert raw.loc[1, "customer_id_nb_tx_1day_window"] == 1003


def test_request_time_features_come_from_the_shared_function(crafted) -> None:
    store, settings = crafted
    frame = feature_store.build_training_set(store, settings).set_index("transaction_id")
    assert frame.loc[5, "tx_during_night"] == 0  # 10:00
    assert frame.loc[2, "tx_during_night"] == 1  # 00:00
    assert frame.loc[3, "tx_amount"] == 30.0
    assert frame.loc[3, "is_fraud"] == 1 and frame.loc[3, "fraud_scenario"] == 1


def test_a_rewritten_mart_is_read_at_its_current_version_only(crafted) -> None:
    store, settings = crafted
    uri = settings.table_uri("marts", "customer_features")
    frame = delta.read_table(uri).to_pandas()
    frame[CUSTOMER_FEATURES[0]] += 500  # what a dbt rebuild with corrected data leaves
    write_mart(settings, "customer_features", frame, CUSTOMER_SCHEMA)
    # The superseded Parquet files are still in the folder; only the Delta log says which count.
    assert len(list(Path(uri).rglob("*.parquet"))) > len(DeltaTable(uri).file_uris())
    got = feature_store.build_training_set(store, settings).set_index("transaction_id")
    assert got.loc[1, CUSTOMER_FEATURES[0]] == 1503
    assert got.index.is_unique
