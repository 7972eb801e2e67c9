"""Materialization into the online store, the online reads serving runs and its readiness check."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast.infra.online_stores.sqlite import SqliteOnlineStore

from features import store as feature_store
from features.store.online import valid_at
from fraudops.contracts import (
    CUSTOMER_FEATURES,
    ENTITY_FEATURES,
    FEATURE_COLUMNS,
    TERMINAL_FEATURES,
)
from fraudops.settings import get_settings
from lakehouse import delta
from serving.features import FeastFeatureSource, GuardedFeatures
from serving.scoring import model_inputs

from .conftest import last_mart_day

# Generous: the lookups are local, this only keeps a loaded machine from tripping the fallback.
TIMEOUT_S = 30.0


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


def _moments(*stamps: pd.Timestamp) -> np.ndarray:
    """Transaction times as the UTC datetime64[us] serving passes to its feature source."""
    return np.array([s.tz_convert(None).to_datetime64() for s in stamps], dtype="datetime64[us]")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def test_materialization_is_incremental_and_tracked_in_the_registry(store, feast_settings) -> None:
    last = last_mart_day(feast_settings)
    first_days = [last - dt.timedelta(days=2), last - dt.timedelta(days=1)]
    report = feature_store.materialize_days(store, feast_settings, first_days)
    assert report.days == first_days
    n_customers, n_terminals = feast_settings.sim_customers, feast_settings.sim_terminals
    # Both days are recorded; only the newer is written (the older is past the one-day TTL).
    assert report.rows == {"customer_features": n_customers, "terminal_features": n_terminals}
    assert report.latest_as_of == _midnight(first_days[-1])
    fv = store.get_feature_view("customer_features")
    assert fv.materialization_intervals == [
        (_midnight(first_days[0]), _midnight(first_days[-1]) + fv.ttl)
    ]
    # Only the newer day is pending now; older days are never rewritten over newer ones.
    assert feature_store.pending_days(store, feast_settings) == [last]
    assert feature_store.materialize_days(store, feast_settings, first_days).entities_written == 0
    again = feature_store.materialize_pending(store, feast_settings)
    assert again.days == [last] and again.entities_written == n_customers + n_terminals
    assert feature_store.materialize_pending(store, feast_settings).entities_written == 0


def test_a_day_is_materialized_from_that_days_rows_only(feast_settings, tmp_path) -> None:
    # A copy of the marts where only the newest day's files are left on disk: a read of any
    # other day's rows would fail, as the first assertion shows.
    lakehouse = tmp_path / "lakehouse"
    shutil.copytree(feast_settings.lakehouse_root, lakehouse)
    settings = get_settings(
        home=tmp_path / "var",
        lakehouse_uri=str(lakehouse),
        feast_project=feast_settings.feast_project,
    )
    last = last_mart_day(settings)
    for view in feature_store.materialize.ENTITY_VIEWS:
        for path in Path(settings.table_uri("marts", view)).rglob("*.parquet"):
            if f"feature_date={last.isoformat()}" not in str(path):
                path.unlink()
    with pytest.raises(OSError):
        delta.read_table(settings.table_uri("marts", "customer_features")).to_pandas()
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    report = feature_store.materialize_days(store, settings, [last])
    assert report.rows == {
        "customer_features": feast_settings.sim_customers,
        "terminal_features": feast_settings.sim_terminals,
    }
    values, stamps = feature_store.OnlineFeatures(store).entity_values("customer_features", [9])
    expected = _mart_row(settings, "customer_features", "customer_id", 9, last)
    assert values[0].tolist() == pytest.approx(expected[CUSTOMER_FEATURES].tolist())
    assert stamps[0] == np.datetime64(_midnight(last).replace(tzinfo=None), "us")


def test_serving_reads_the_latest_mart_rows_and_builds_the_model_inputs(
    store, feast_settings
) -> None:
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last - dt.timedelta(days=1), last])
    when = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=3)  # a night-time transaction
    found = FeastFeatureSource(store).lookup([7, 8], [11, 12], _moments(when, when))
    assert found.missing.tolist() == [False, False]
    for row, (customer_id, terminal_id) in enumerate([(7, 11), (8, 12)]):
        customer = _mart_row(feast_settings, "customer_features", "customer_id", customer_id, last)
        terminal = _mart_row(feast_settings, "terminal_features", "terminal_id", terminal_id, last)
        expected = [*customer[CUSTOMER_FEATURES], *terminal[TERMINAL_FEATURES]]
        assert found.values[row].tolist() == pytest.approx(expected)
    assert found.customer_ts.tolist() == [_midnight(last).timestamp()] * 2
    # The 15 model inputs as the scoring service builds them from these rows.
    epoch_us = np.array([when.value // 1_000] * 2, dtype="int64")
    inputs = pd.DataFrame(
        model_inputs(epoch_us, np.array([12.5, 99.0]), found.values), columns=FEATURE_COLUMNS
    )
    assert inputs["tx_amount"].tolist() == [12.5, 99.0]
    assert inputs["tx_during_night"].tolist() == [1, 1]
    assert inputs[ENTITY_FEATURES].to_numpy().tolist() == found.values.tolist()


def test_lean_reads_equal_feast_get_online_features(store, feast_settings) -> None:
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


def test_unknown_entities_expired_and_future_rows_are_filled_and_flagged(
    store, feast_settings
) -> None:
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last])
    online = feature_store.OnlineFeatures(store)
    values, stamps = online.entity_values("customer_features", [10_000])
    assert np.isnan(values).all() and np.isnat(stamps).all()  # nulls, not an error
    fresh = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=12)
    stale = fresh + pd.Timedelta(days=2)  # the row of `last` has expired by then
    early = fresh - pd.Timedelta(days=1)  # before the row of `last` was valid
    guarded = GuardedFeatures(FeastFeatureSource(store), timeout_s=TIMEOUT_S, retry_s=60)
    out = guarded.fetch([10_000, 3, 3, 3], [5, 5, 5, 5], _moments(fresh, fresh, stale, early))
    assert out.store_error is None
    assert out.missing.tolist() == [True, False, True, True]
    customer, terminal = slice(0, len(CUSTOMER_FEATURES)), slice(len(CUSTOMER_FEATURES), None)
    assert out.values[0, customer].tolist() == [0] * 6
    # The flag is per transaction; the valid terminal row is still served for row 0.
    assert out.values[0, terminal].tolist() == out.values[1, terminal].tolist()
    assert out.values[1, terminal].tolist() == pytest.approx(
        _mart_row(feast_settings, "terminal_features", "terminal_id", 5, last)[TERMINAL_FEATURES]
    )
    assert out.values[2].tolist() == [0] * 12 and out.values[3].tolist() == [0] * 12
    assert out.as_of == [None, _midnight(last), None, None]


def test_a_row_is_valid_from_its_stamp_until_the_ttl_has_passed() -> None:
    stamp = np.datetime64("2018-05-02T00:00:00", "us")
    ttl = np.timedelta64(1, "D").astype("timedelta64[us]")
    moments = stamp + np.array([-1, 0, 1, ttl.astype(int), ttl.astype(int) + 1], "timedelta64[us]")
    stamps = np.array([stamp] * 5 + [np.datetime64("NaT")], dtype="datetime64[us]")
    got = valid_at(stamps, np.append(moments, stamp), ttl)
    assert got.tolist() == [False, True, True, True, False, False]


def test_readiness_needs_the_newest_materialized_rows_in_the_store(
    store, feast_settings, tmp_path
) -> None:
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last - dt.timedelta(days=1)])
    db = Path(SqliteOnlineStore._get_db_path(store.config))
    older = tmp_path / "older.db"
    shutil.copy(db, older)
    feature_store.materialize_days(store, feast_settings, [last])
    guarded = GuardedFeatures(FeastFeatureSource(store), timeout_s=TIMEOUT_S, retry_s=60)
    assert guarded.ready()
    # A restored older copy: the store answers, but not with what the registry says it holds.
    os.replace(older, db)
    assert not guarded.ready(), "ready on the rows of an older materialization"
    stale = guarded.readiness()
    assert f"as of {last.isoformat()}" in stale.reason
    # An empty file in place of the store.
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    os.replace(empty, db)
    assert not guarded.ready(), "ready on an empty store file"
    assert "customer_features" in guarded.readiness().reason


@pytest.mark.services
def test_readiness_on_redis_needs_rows_not_just_an_answer(feast_settings, redis_url) -> None:
    settings = feast_settings.model_copy(
        update={"feast_online_store": "redis", "redis_url": redis_url}
    )
    client = redis.Redis.from_url(redis_url)
    try:
        store = feature_store.open_store(settings)
        feature_store.apply_definitions(store, settings)
        feature_store.materialize_days(store, settings, [last_mart_day(settings)])
        # An unknown entity has no row (Feast's Redis store stamps it at the epoch).
        values, stamps = feature_store.OnlineFeatures(store).entity_values(
            "customer_features", [99_999]
        )
        assert np.isnan(values).all() and np.isnat(stamps).all()
        guarded = GuardedFeatures(FeastFeatureSource(store), timeout_s=TIMEOUT_S, retry_s=60)
        assert guarded.ready()
        # Redis restarted without its data: it answers every lookup, with nothing.
        for key in client.scan_iter(match=f"*{settings.feast_project}", count=1000):
            client.delete(key)
        assert not guarded.ready(), "ready on an empty Redis"
        assert "no row" in guarded.readiness().reason
    finally:
        # Feast's Redis keys are the serialized entity key followed by the project name.
        for key in client.scan_iter(match=f"*{settings.feast_project}", count=1000):
            client.delete(key)
