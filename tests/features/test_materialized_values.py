"""Feast's materialization of marts with nulls and NaN, read back the way serving reads them.

The dbt contract bounds the feature columns but does not forbid nulls, so the marts here hold
nulls, NaN, -0.0, large values and ids past 255 (their stored key bytes sort differently from
the numbers). On SQLite (our bulk reader) and Redis (Feast's ``online_read``), serving's source
and Feast's ``get_online_features`` must both return the mart values, nulls as missing.
"""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from features import store as feature_store
from features.store import materialize
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings, get_settings
from serving.features import FeastFeatureSource, GuardedFeatures

from .conftest import CUSTOMER_SCHEMA, TERMINAL_SCHEMA, write_mart

CUSTOMERS, TERMINALS = 40, 70
DAYS = [dt.date(2018, 5, 1), dt.date(2018, 5, 2)]
STEP = 97
CUSTOMER_IDS = [1 + i * STEP for i in range(CUSTOMERS)]
TERMINAL_IDS = [1 + i * STEP for i in range(TERMINALS)]


def _mart(key: str, features: list[str], n: int, seed: int) -> pd.DataFrame:
    """Two as-of days of ``n`` entities with random values, nulls, NaN and edge values."""
    rng = np.random.default_rng(seed)
    frames = []
    for day in DAYS:
        frame = pd.DataFrame({key: 1 + np.arange(n, dtype="int64")[::-1] * STEP})
        frame["feature_timestamp"] = pd.Timestamp(day, tz="UTC")
        frame["feature_date"] = day
        for name in features:
            if "_nb_tx_" in name:
                values = pd.array(rng.poisson(4, n), dtype="Int64")
                values[rng.random(n) < 0.15] = pd.NA
            else:
                values = rng.random(n) * 100
                values[rng.random(n) < 0.1] = np.nan
                values[:3] = [0.0, -0.0, 1e16]
            frame[name] = values
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def null_marts(tmp_path_factory) -> str:
    """A lakehouse whose entity marts hold nulls and NaN (two as-of days)."""
    settings = get_settings(home=tmp_path_factory.mktemp("null_marts") / "var")
    write_mart(
        settings,
        "customer_features",
        _mart("customer_id", CUSTOMER_FEATURES, CUSTOMERS, 1),
        CUSTOMER_SCHEMA,
    )
    write_mart(
        settings,
        "terminal_features",
        _mart("terminal_id", TERMINAL_FEATURES, TERMINALS, 2),
        TERMINAL_SCHEMA,
    )
    return settings.lakehouse_root


@pytest.fixture(
    params=["sqlite", pytest.param("redis", marks=pytest.mark.services)],
)
def settings(request, null_marts, tmp_path):
    """Settings over the null marts, per online store; the test's Redis keys are removed after."""
    project = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield get_settings(home=tmp_path / "var", lakehouse_uri=null_marts, feast_project=project)
        return
    import redis

    url = request.getfixturevalue("redis_url")
    yield get_settings(
        home=tmp_path / "var",
        lakehouse_uri=null_marts,
        feast_project=project,
        feast_online_store="redis",
        redis_url=url,
    )
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"*{project}*", count=1000):
        client.delete(key)


def _store(settings: Settings):
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    return store


def _mart_values(settings: Settings, view: str, key: str, ids: list[int]) -> pd.DataFrame:
    """The mart rows of ``ids`` on the newest day, in the order of ``ids``."""
    table = materialize.mart_table(settings, view).to_pyarrow_table(
        filters=[("feature_date", "=", DAYS[-1])]
    )
    return table.to_pandas().set_index(key).loc[ids]


def _when(n: int) -> np.ndarray:
    return np.full(n, np.datetime64(dt.datetime.combine(DAYS[-1], dt.time(9)), "us"))


def test_online_values_are_the_mart_values_nulls_included(settings) -> None:
    store = _store(settings)
    for day in DAYS:  # day by day, as the daily runs do
        feature_store.materialize_days(store, settings, [day])
    customers, terminals = CUSTOMER_IDS, TERMINAL_IDS[:CUSTOMERS][::-1]
    expected = np.hstack(
        [
            _mart_values(settings, "customer_features", "customer_id", customers)[
                CUSTOMER_FEATURES
            ].to_numpy("float64", na_value=np.nan),
            _mart_values(settings, "terminal_features", "terminal_id", terminals)[
                TERMINAL_FEATURES
            ].to_numpy("float64", na_value=np.nan),
        ]
    )
    assert np.isnan(expected).any()
    found = FeastFeatureSource(store).lookup(customers, terminals, _when(CUSTOMERS))
    np.testing.assert_array_equal(found.values, expected)
    assert not found.missing.any()  # every row is valid; nulls are the fill rule's to handle

    refs = [f"customer_features:{f}" for f in CUSTOMER_FEATURES]
    refs += [f"terminal_features:{f}" for f in TERMINAL_FEATURES]
    rows = [{"customer_id": c, "terminal_id": t} for c, t in zip(customers, terminals, strict=True)]
    feast = store.get_online_features(features=refs, entity_rows=rows).to_df()
    names = [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]
    np.testing.assert_array_equal(feast[names].to_numpy("float64", na_value=np.nan), expected)

    # The fill rule: a null value becomes 0 and flags its transaction, the others are kept.
    guarded = GuardedFeatures(FeastFeatureSource(store), timeout_s=30.0, retry_s=60)
    out = guarded.fetch(customers, terminals, _when(CUSTOMERS))
    np.testing.assert_array_equal(out.values, np.nan_to_num(expected, nan=0.0))
    assert out.missing.tolist() == np.isnan(expected).any(axis=1).tolist()


def test_days_only_move_forward(settings) -> None:
    store = _store(settings)
    assert feature_store.materialize_days(store, settings, DAYS[1:]).entities_written == (
        CUSTOMERS + TERMINALS
    )
    source = FeastFeatureSource(store)
    before = source.lookup(CUSTOMER_IDS, CUSTOMER_IDS, _when(CUSTOMERS))
    older = feature_store.materialize_days(store, settings, DAYS[:1])
    assert older.entities_written == 0 and older.days == []
    after = source.lookup(CUSTOMER_IDS, CUSTOMER_IDS, _when(CUSTOMERS))
    np.testing.assert_array_equal(after.values, before.values)
    np.testing.assert_array_equal(after.customer_ts, before.customer_ts)
