"""Materialization into the SQLite online store and online lookups, on the tiny marts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from lakehouse import delta
from ml import feature_store
from ml.features import CUSTOMER_FEATURES, FEATURE_COLUMNS, TERMINAL_FEATURES

from .conftest import last_mart_day


@pytest.fixture
def store(feast_settings):
    """An applied store over the tiny marts, nothing materialized yet."""
    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    return store


def _mart_row(settings, name: str, key: str, entity: int, day: dt.date) -> pd.Series:
    table = delta.read_table(
        settings.table_uri("marts", name), filters=[("feature_date", "=", day)]
    ).to_pandas()
    return table.set_index(key).loc[entity]


def test_materialization_is_incremental_and_tracked_in_the_registry(store, feast_settings) -> None:
    last = last_mart_day(feast_settings)
    first_days = [last - dt.timedelta(days=2), last - dt.timedelta(days=1)]
    report = feature_store.materialize_days(store, feast_settings, first_days)
    assert report.days == first_days
    n_customers, n_terminals = feast_settings.sim_customers, feast_settings.sim_terminals
    # Both days are recorded; only the newer is written (the older is past the one-day TTL).
    assert report.rows == {"customer_features": n_customers, "terminal_features": n_terminals}
    assert report.latest_as_of == dt.datetime.combine(first_days[-1], dt.time(), tzinfo=dt.UTC)
    # Only the newer day is pending now; older days are never rewritten over newer ones.
    assert feature_store.pending_days(store, feast_settings) == [last]
    again = feature_store.materialize_pending(store, feast_settings)
    assert again.days == [last] and again.entities_written == n_customers + n_terminals
    assert feature_store.materialize_pending(store, feast_settings).entities_written == 0


def test_online_lookup_serves_the_latest_mart_rows_with_request_features(
    store, feast_settings
) -> None:
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last - dt.timedelta(days=1), last])
    when = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=3)  # a night-time transaction
    out = feature_store.OnlineFeatures(store).lookup([7, 8], [11, 12], [when, when], [12.5, 99.0])
    assert list(out.columns[:15]) == FEATURE_COLUMNS
    customer = _mart_row(feast_settings, "customer_features", "customer_id", 8, last)
    terminal = _mart_row(feast_settings, "terminal_features", "terminal_id", 12, last)
    assert out.loc[1, CUSTOMER_FEATURES].tolist() == pytest.approx(
        customer[CUSTOMER_FEATURES].tolist()
    )
    assert out.loc[1, TERMINAL_FEATURES].tolist() == pytest.approx(
        terminal[TERMINAL_FEATURES].tolist()
    )
    assert out["tx_amount"].tolist() == [12.5, 99.0]
    assert out["tx_during_night"].tolist() == [1, 1]
    assert out["features_missing"].tolist() == [0, 0]


def test_lean_lookup_equals_feast_get_online_features(store, feast_settings) -> None:
    feature_store.materialize_days(store, feast_settings, [last_mart_day(feast_settings)])
    customers, terminals = [1, 5, 33, 60], [2, 40, 77, 120]
    online = feature_store.OnlineFeatures(store)
    refs = [f"customer_features:{f}" for f in CUSTOMER_FEATURES]
    refs += [f"terminal_features:{f}" for f in TERMINAL_FEATURES]
    feast = store.get_online_features(
        features=refs,
        entity_rows=[
            {"customer_id": c, "terminal_id": t} for c, t in zip(customers, terminals, strict=True)
        ],
    ).to_df()
    values, _ = online.entity_values("customer_features", customers)
    np.testing.assert_allclose(values, feast[CUSTOMER_FEATURES].to_numpy("float64"))
    values, _ = online.entity_values("terminal_features", terminals)
    np.testing.assert_allclose(values, feast[TERMINAL_FEATURES].to_numpy("float64"))


def test_unknown_entities_and_expired_rows_are_filled_and_flagged(store, feast_settings) -> None:
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last])
    online = feature_store.OnlineFeatures(store)
    values, stamps = online.entity_values("customer_features", [10_000])
    assert np.isnan(values).all() and np.isnat(stamps).all()  # nulls, not an error
    fresh = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=12)
    stale = fresh + pd.Timedelta(days=2)  # the row of `last` has expired by then
    out = online.lookup([10_000, 3, 3], [5, 5, 5], [fresh, fresh, stale], [1.0, 1.0, 1.0])
    assert out["features_missing"].tolist() == [1, 0, 1]
    assert out.loc[0, CUSTOMER_FEATURES].tolist() == [0] * 6
    # The flag is per transaction; the valid terminal row is still served for row 0.
    assert out.loc[0, TERMINAL_FEATURES].tolist() == out.loc[1, TERMINAL_FEATURES].tolist()
    assert out.loc[2, [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]].tolist() == [0] * 12
