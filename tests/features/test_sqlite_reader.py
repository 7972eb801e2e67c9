"""The bulk SQLite reader returns what Feast's ``online_read`` returns, from the current file."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features import store as feature_store
from features.store.sqlite_reader import (
    SMALL_BATCH,
    OnlineFormatMismatchError,
    SqliteOnlineReader,
    decode_values,
    entity_keys,
)
from fraudops.contracts import CUSTOMER_FEATURES

AS_OF = dt.datetime(2018, 5, 2, tzinfo=dt.UTC)


@pytest.fixture
def store(feast_settings):
    """An applied store with nothing written yet."""
    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    return store


def _feast_read(store, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Feast's own online_read of the customer view, as (values, event times)."""
    fv = store.get_feature_view("customer_features")
    keys = [EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=i)]) for i in ids]
    rows = store._get_provider().online_store.online_read(store.config, fv, keys)
    values = np.full((len(ids), len(CUSTOMER_FEATURES)), np.nan)
    stamps = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[us]")
    for i, (ts, data) in enumerate(rows):
        if data is None:
            continue
        for j, name in enumerate(CUSTOMER_FEATURES):
            kind = data[name].WhichOneof("val")
            values[i, j] = np.nan if kind is None else float(getattr(data[name], kind))
        stamps[i] = np.datetime64(ts.replace(tzinfo=None), "us")
    return values, stamps


def test_reader_equals_feast_online_read_on_edge_values(store) -> None:
    # Counts with one- to ten-byte varints (negative ints take ten), averages with NaN (stored
    # as the empty Value), written through Feast's own write path; enough entities that the
    # values go through the vectorised decoding, and single reads through protobuf's parser.
    edges = [0, 1, 127, 128, 300, 2**40 + 5, -1, -(2**62)]
    rng = np.random.default_rng(3)
    counts = np.concatenate([edges, rng.integers(-(2**50), 2**50, 32)]).astype("int64")
    n = len(counts)
    frame = pd.DataFrame({"customer_id": np.arange(1, n + 1, dtype="int64")})
    for j, name in enumerate(CUSTOMER_FEATURES):
        if "_nb_tx_" in name:
            frame[name] = np.roll(counts, j)
        else:
            frame[name] = np.where(np.arange(n) % 7 == j, np.nan, rng.normal(size=n) * 1e3)
    frame["feature_timestamp"] = [AS_OF + dt.timedelta(hours=i) for i in range(n)]
    store.write_to_online_store("customer_features", frame)

    ids = [3, 1, 99_999, 3, *range(2, n + 1)]  # an unknown id and a repeated one
    reader = SqliteOnlineReader(store, ["customer_id"])
    fv = store.get_feature_view("customer_features")
    values, stamps = reader.read(fv, "customer_id", ids, CUSTOMER_FEATURES)
    want_values, want_stamps = _feast_read(store, ids)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(stamps, want_stamps)
    assert np.isnan(values[2]).all() and np.isnat(stamps[2])
    assert values[0].tolist() == values[3].tolist()
    assert stamps[0] == np.datetime64("2018-05-02T02:00:00", "us")
    for entity in (1, 6, 8, 99_999):
        one, stamp = reader.read(fv, "customer_id", [entity], CUSTOMER_FEATURES)
        want_one, want_stamp = _feast_read(store, [entity])
        np.testing.assert_array_equal(one, want_one)
        np.testing.assert_array_equal(stamp, want_stamp)


def test_reader_serves_the_latest_write_of_an_entity(store) -> None:
    reader = SqliteOnlineReader(store, ["customer_id"])
    fv = store.get_feature_view("customer_features")
    for day, value in ((0, 1.5), (1, 2.5)):
        frame = pd.DataFrame({"customer_id": [42], "feature_timestamp": [AS_OF]})
        for name in CUSTOMER_FEATURES:
            frame[name] = [day + 1] if "_nb_tx_" in name else [value]
        frame["feature_timestamp"] = [AS_OF + dt.timedelta(days=day)]
        store.write_to_online_store("customer_features", frame)
    values, stamps = reader.read(fv, "customer_id", [42], CUSTOMER_FEATURES)
    assert values[0].tolist() == [2, 2.5, 2, 2.5, 2, 2.5]
    assert stamps[0] == np.datetime64(AS_OF.replace(tzinfo=None) + dt.timedelta(days=1), "us")


def test_decode_values_vectorised_equals_protobuf_for_every_layout() -> None:
    rng = np.random.default_rng(5)
    protos = [
        Value(float_val=1.5),
        Value(int32_val=-7),
        Value(bool_val=True),
        Value(double_val=-0.125),
        Value(int64_val=2**63 - 1),
        Value(),
        *[Value(int64_val=int(v)) for v in rng.integers(-(2**62), 2**62, 50)],
        *[Value(double_val=float(v)) for v in rng.normal(size=50)],
    ]
    blobs = [p.SerializeToString() for p in protos]
    vectorised = decode_values(blobs)
    assert len(blobs) > SMALL_BATCH
    one_by_one = np.concatenate([decode_values([b]) for b in blobs])
    np.testing.assert_array_equal(vectorised, one_by_one)
    assert vectorised[:5].tolist() == [1.5, -7.0, 1.0, -0.125, float(2**63 - 1)]
    assert np.isnan(vectorised[5])


def test_entity_keys_match_feast() -> None:
    ids = np.array([1, 2, 255, 256, 10_000, -1, 2**63 - 1, -(2**63)], dtype=np.int64)
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=["terminal_id"], entity_values=[Value(int64_val=int(i))]), 3
        )
        for i in ids
    ]
    assert entity_keys("terminal_id", ids) == expected


def test_reader_refuses_a_key_layout_it_does_not_build(store) -> None:
    # Serialization version 2 (still accepted by Feast) lays keys out differently.
    store.config.entity_key_serialization_version = 2
    with pytest.raises(OnlineFormatMismatchError, match="customer_id"):
        SqliteOnlineReader(store, ["customer_id"])


def _write_customer(store, entity: int, value: float, day: int) -> None:
    """One customer row through Feast's own write path, stamped ``day`` days after AS_OF."""
    frame = pd.DataFrame({"customer_id": [entity]})
    for name in CUSTOMER_FEATURES:
        frame[name] = [day + 1] if "_nb_tx_" in name else [value]
    frame["feature_timestamp"] = [AS_OF + dt.timedelta(days=day)]
    store.write_to_online_store("customer_features", frame)


def _eventually(check, timeout: float = 5.0) -> bool:
    """Whether ``check()`` comes true within ``timeout`` s (the reader rechecks every second)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_reader_reopens_a_replaced_store_file(store, tmp_path) -> None:
    reader = SqliteOnlineReader(store, ["customer_id"])
    fv = store.get_feature_view("customer_features")
    _write_customer(store, 42, 1.5, day=0)
    older = tmp_path / "older.db"
    shutil.copy(reader.path, older)
    _write_customer(store, 42, 2.5, day=1)
    assert reader.read(fv, "customer_id", [42], CUSTOMER_FEATURES)[0][0, 1] == 2.5
    # A restore: another file takes the path the reader's connection was opened on.
    os.replace(older, reader.path)
    value = lambda: reader.read(fv, "customer_id", [42], CUSTOMER_FEATURES)[0][0, 1]  # noqa: E731
    assert _eventually(lambda: value() == 1.5), f"still reading {value()} from the old file"


@pytest.mark.parametrize("replacement", ["empty", "removed"])
def test_reader_fails_once_its_file_is_replaced_by_an_empty_one_or_removed(
    store, tmp_path, replacement
) -> None:
    reader = SqliteOnlineReader(store, ["customer_id"])
    fv = store.get_feature_view("customer_features")
    _write_customer(store, 42, 1.5, day=0)
    assert reader.read(fv, "customer_id", [42], CUSTOMER_FEATURES)[0][0, 1] == 1.5
    if replacement == "empty":
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        os.replace(empty, reader.path)
    else:
        reader.path.unlink()

    def fails() -> bool:
        try:
            reader.read(fv, "customer_id", [42], CUSTOMER_FEATURES)
        except (sqlite3.Error, OSError):
            return True
        return False

    assert _eventually(fails), "the reader kept serving the rows of a file that is gone"


def test_sample_ids_lists_entities_with_rows_as_of_a_time(store) -> None:
    reader = SqliteOnlineReader(store, ["customer_id"])
    fv = store.get_feature_view("customer_features")
    assert reader.sample_ids(fv, "customer_id", 5).tolist() == []
    for entity, day in ((7, 0), (8, 1), (2**40 + 1, 1)):
        _write_customer(store, entity, 1.0, day)
    assert sorted(reader.sample_ids(fv, "customer_id", 5).tolist()) == [7, 8, 2**40 + 1]
    newer = np.datetime64(AS_OF.replace(tzinfo=None) + dt.timedelta(days=1), "us")
    assert sorted(reader.sample_ids(fv, "customer_id", 5, since=newer).tolist()) == [8, 2**40 + 1]
    assert len(reader.sample_ids(fv, "customer_id", 1)) == 1
