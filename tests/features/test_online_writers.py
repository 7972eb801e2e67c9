"""The bulk online writers store exactly what Feast's own materialization stores.

Each test materializes the same marts twice, once through our writer and once through Feast's
conversion and ``online_write_batch`` (the reference), then compares the stored bytes and what
Feast reads back. The marts hold nulls and NaN: the dbt contract only bounds the feature
columns, it does not forbid nulls.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest
from feast.value_type import ValueType

from fraudops.settings import Settings, get_settings
from ml import feature_store
from ml.feature_store import materialize, online_codec, redis_writer
from ml.features import CUSTOMER_FEATURES, TERMINAL_FEATURES

from .conftest import CUSTOMER_SCHEMA, TERMINAL_SCHEMA, write_mart

CUSTOMERS, TERMINALS = 40, 70
DAYS = [dt.date(2018, 5, 1), dt.date(2018, 5, 2)]
# Ids past 255, so the stored key order (little-endian bytes) differs from the numeric one.
STEP = 97
CUSTOMER_IDS = [1 + i * STEP for i in range(CUSTOMERS)]


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
    customers = _mart("customer_id", CUSTOMER_FEATURES, CUSTOMERS, 1)
    terminals = _mart("terminal_id", TERMINAL_FEATURES, TERMINALS, 2)
    write_mart(settings, "customer_features", customers, CUSTOMER_SCHEMA)
    write_mart(settings, "terminal_features", terminals, TERMINAL_SCHEMA)
    return settings.lakehouse_root


def _store(settings: Settings):
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    return store


def _materialize(store, settings: Settings, days: list[dt.date], monkeypatch, feast: bool):
    """Materialize day by day, through Feast's own path when ``feast``."""
    with monkeypatch.context() as patch:
        if feast:
            patch.setattr(materialize, "_bulk_writer", lambda store: None)
        for day in days:
            feature_store.materialize_days(store, settings, [day])


def _online(store, customers: list[int], terminals: list[int]) -> dict:
    refs = [f"customer_features:{f}" for f in CUSTOMER_FEATURES]
    refs += [f"terminal_features:{f}" for f in TERMINAL_FEATURES]
    rows = [{"customer_id": c, "terminal_id": t} for c, t in zip(customers, terminals, strict=True)]
    return store.get_online_features(features=refs, entity_rows=rows).to_dict()


def _mart_values(settings: Settings, view: str, key: str, day: dt.date) -> pd.DataFrame:
    table = materialize.mart_table(settings, view).to_pyarrow_table(
        filters=[("feature_date", "=", day)]
    )
    return table.to_pandas().set_index(key).sort_index()


class TestSqlite:
    @pytest.fixture
    def pair(self, null_marts, tmp_path):
        """Two embedded stores over the same marts, same project name, separate files."""
        project = f"t{uuid.uuid4().hex[:10]}"
        make = lambda name: get_settings(  # noqa: E731
            home=tmp_path / name, lakehouse_uri=null_marts, feast_project=project
        )
        ours, reference = make("ours"), make("feast")
        return (ours, _store(ours)), (reference, _store(reference))

    @staticmethod
    def _rows(settings: Settings, store, view: str) -> list[tuple]:
        path = settings.home / "feast" / "online.db"
        with sqlite3.connect(path) as conn:
            return conn.execute(
                "select entity_key, feature_name, value, value_text, vector_value, event_ts, "
                f'typeof(event_ts), created_ts from "{store.project}_{view}" '
                "order by entity_key, feature_name"
            ).fetchall()

    def test_rows_are_byte_identical_to_feast(self, pair, monkeypatch) -> None:
        (ours, ours_store), (reference, feast_store) = pair
        _materialize(ours_store, ours, DAYS, monkeypatch, feast=False)
        _materialize(feast_store, reference, DAYS, monkeypatch, feast=True)
        for view, n in (("customer_features", CUSTOMERS), ("terminal_features", TERMINALS)):
            rows = self._rows(ours, ours_store, view)
            # One row per entity and feature: the later day replaced the earlier one.
            assert len(rows) == n * 6
            assert rows == self._rows(reference, feast_store, view)
        assert {r[3] for r in self._rows(ours, ours_store, "terminal_features")} >= {None}

    def test_feast_reads_back_the_mart_values(self, pair, monkeypatch) -> None:
        (ours, ours_store), (reference, feast_store) = pair
        _materialize(ours_store, ours, DAYS, monkeypatch, feast=False)
        _materialize(feast_store, reference, DAYS, monkeypatch, feast=True)
        customers, terminals = CUSTOMER_IDS, CUSTOMER_IDS[::-1]
        online = _online(ours_store, customers, terminals)
        assert online == _online(feast_store, customers, terminals)
        mart = _mart_values(ours, "customer_features", "customer_id", DAYS[-1])
        for name in CUSTOMER_FEATURES:
            expected = [None if pd.isna(v) else v for v in mart[name].tolist()]
            assert online[name] == expected, name
        assert any(v is None for v in online["customer_id_avg_amount_1day_window"])

    def test_a_missing_online_table_is_a_clear_error(self, pair) -> None:
        (ours, ours_store), _ = pair
        with sqlite3.connect(ours.home / "feast" / "online.db") as conn:
            conn.execute(f'drop table "{ours_store.project}_customer_features"')
        with pytest.raises(RuntimeError, match="apply the definitions"):
            feature_store.materialize_days(ours_store, ours, [DAYS[0]])


@pytest.mark.services
class TestRedis:
    @pytest.fixture
    def pair(self, null_marts, redis_url, tmp_path):
        """Two production-profile stores on the real Redis, one project each, cleaned after."""
        import redis

        projects = [f"t{uuid.uuid4().hex[:10]}" for _ in range(2)]
        settings = [
            get_settings(
                home=tmp_path / p,
                lakehouse_uri=null_marts,
                feast_project=p,
                feast_online_store="redis",
                redis_url=redis_url,
            )
            for p in projects
        ]
        yield [(s, _store(s)) for s in settings]
        client = redis.Redis.from_url(redis_url)
        for project in projects:
            for key in client.scan_iter(match=f"*{project}*", count=1000):
                client.delete(key)

    @staticmethod
    def _hashes(settings: Settings) -> dict[bytes, dict[bytes, bytes]]:
        """Every hash of the project, keyed by the serialized entity key."""
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        suffix = settings.feast_project.encode()
        return {
            key[: -len(suffix)]: client.hgetall(key)
            for key in client.scan_iter(match=f"*{settings.feast_project}", count=1000)
        }

    def test_hashes_are_byte_identical_to_feast(self, pair, monkeypatch) -> None:
        (ours, ours_store), (reference, feast_store) = pair
        _materialize(ours_store, ours, DAYS, monkeypatch, feast=False)
        _materialize(feast_store, reference, DAYS, monkeypatch, feast=True)
        hashes = self._hashes(ours)
        assert len(hashes) == CUSTOMERS + TERMINALS
        assert hashes == self._hashes(reference)
        customers, terminals = CUSTOMER_IDS, CUSTOMER_IDS[::-1]
        assert _online(ours_store, customers, terminals) == _online(
            feast_store, customers, terminals
        )

    def test_older_rows_do_not_overwrite_newer_ones(self, pair, monkeypatch) -> None:
        (ours, ours_store), _ = pair
        _materialize(ours_store, ours, DAYS[1:], monkeypatch, feast=False)
        before = self._hashes(ours)
        fv = ours_store.get_feature_view("customer_features")
        table = materialize.mart_table(ours, "customer_features").to_pyarrow_table(
            columns=["customer_id", "feature_timestamp", *CUSTOMER_FEATURES],
            filters=[("feature_date", "=", DAYS[0])],
        )
        older = [
            online_codec.encode_batch(b, fv, "customer_id", ValueType.INT64, 3)
            for b in table.to_batches()
        ]
        redis_writer.write(ours_store, fv, older)  # Feast's rule: not newer, so skipped
        assert self._hashes(ours) == before
