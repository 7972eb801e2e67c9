"""Bulk reader of Feast's SQLite online-store rows: one query, values decoded with numpy.

Feast's ``SqliteOnlineStore.online_read`` serializes every entity key, parses one protobuf per
stored value and converts every timestamp in Python; for a batch of 1,000 transactions that is
tens of milliseconds. This reader runs the same query on the same table (the rows Feast's
materialization wrote) and decodes a whole batch at once: ``int64_val`` varints and
``double_val`` fixed64 values vectorised, the empty ``ValueProto`` as NaN, anything else (and
reads of a few values, where it is cheaper) through Feast's protobuf class. Event times are read
as stored (epoch seconds, UTC) rather than through Feast's converter, which reads them as local
time. The entity-key layout it builds is checked against Feast's serializer when the reader is
made, and a test proves it returns what Feast's ``online_read`` returns.

Connections stay open (one per thread), so each one remembers which file it opened (device,
inode, modification time) and, at most once per ``RECHECK_S``, compares it with the file now at
the path: a restored copy or a fresh empty file put in its place is reopened, a removed file
fails the read, instead of serving the rows of a file that is no longer the store.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType as ProtoValueType

# Protobuf tags of Value.int64_val (field 4, varint) and Value.double_val (field 5, fixed64).
INT64_TAG, DOUBLE_TAG = 0x20, 0x29

# Tag byte plus the longest varint (10 bytes) of an int64.
MAX_VALUE_BYTES = 11
# Below this many values, protobuf's parser beats the fixed cost of the numpy decoding.
SMALL_BATCH = 64
# Stay far below SQLite's bound on the parameters of one statement.
KEYS_PER_QUERY = 10_000
# How often a connection checks that the path still names the file it opened (one stat).
RECHECK_S = 1.0


class OnlineFormatMismatchError(RuntimeError):
    """Our entity keys differ from Feast's: the installed Feast changed its online format."""


def supports(store: FeatureStore) -> bool:
    """Whether the store's online tables are the plain SQLite rows this reader decodes."""
    online = store.config.online_store
    return (
        getattr(online, "type", "") == "sqlite"
        and not getattr(online, "vector_enabled", False)
        and not getattr(online, "enable_openai_compatible_store", False)
    )


def entity_keys(join_key: str, ids: np.ndarray) -> list[bytes]:
    """Feast's serialized entity key (version 3, one INT64 join key) of each id."""
    name = join_key.encode()
    # key count, then (type STRING, length, name), then (type INT64, length 8, value)
    prefix = struct.pack("<III", 1, ProtoValueType.STRING, len(name)) + name
    prefix += struct.pack("<II", ProtoValueType.INT64, 8)
    width = len(prefix) + 8
    out = np.empty((len(ids), width), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix) :] = np.asarray(ids).astype("<i8").view(np.uint8).reshape(-1, 8)
    buffer = out.tobytes()
    return [buffer[i : i + width] for i in range(0, len(buffer), width)]


def _varints(payload: np.ndarray) -> np.ndarray:
    """Decode one little-endian base-128 varint per row of a uint8 matrix (as int64)."""
    bits = payload.astype("uint64")
    more = (bits & 0x80) != 0
    # A byte belongs to the varint while every byte before it had its continuation bit set.
    inside = np.ones_like(more)
    inside[:, 1:] = np.cumprod(more[:, :-1], axis=1).astype(bool)
    shifts = (7 * np.arange(payload.shape[1], dtype="uint64"))[None, :]
    total = np.bitwise_or.reduce(((bits & 0x7F) << shifts) * inside, axis=1)
    return total.view("int64")


def _protobuf_number(blob: bytes) -> float:
    """One value through Feast's protobuf class (NaN when unset)."""
    value = ValueProto.FromString(blob)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return np.nan
    return float(getattr(value, kind))


def decode_values(blobs: Sequence[bytes]) -> np.ndarray:
    """Serialized ``ValueProto`` numbers as float64 (NaN for unset values)."""
    n = len(blobs)
    if n <= SMALL_BATCH:
        return np.fromiter((_protobuf_number(b) for b in blobs), dtype="float64", count=n)
    lengths = np.fromiter(map(len, blobs), dtype="int64", count=n)
    out = np.full(n, np.nan)
    fits = lengths <= MAX_VALUE_BYTES
    raw = np.array([b if len(b) <= MAX_VALUE_BYTES else b"" for b in blobs], f"S{MAX_VALUE_BYTES}")
    matrix = raw.view(np.uint8).reshape(n, MAX_VALUE_BYTES)
    tags = np.where(lengths > 0, matrix[:, 0], 0)
    doubles = fits & (tags == DOUBLE_TAG) & (lengths == 9)
    out[doubles] = np.ascontiguousarray(matrix[doubles, 1:9]).view("<f8").ravel()
    ints = fits & (tags == INT64_TAG)
    out[ints] = _varints(matrix[ints, 1:]).astype("float64")
    for i in np.flatnonzero((lengths > 0) & ~doubles & ~ints):
        out[i] = _protobuf_number(blobs[i])
    return out


def _epoch_seconds(stamps: Sequence[int]) -> np.ndarray:
    """Stored event times (epoch seconds: Feast's registered sqlite3 adapter) as datetime64[us]."""
    return np.array(stamps, dtype="int64").astype("datetime64[s]").astype("datetime64[us]")


def _check_key_layout(join_key: str, version: int) -> None:
    """Raise when our entity keys differ from Feast's for this store's serialization version."""
    for entity in (1, 2**40 + 7, -3):
        proto = EntityKey(join_keys=[join_key], entity_values=[ValueProto(int64_val=entity)])
        expected = serialize_entity_key(proto, entity_key_serialization_version=version)
        if entity_keys(join_key, np.array([entity]))[0] != expected:
            raise OnlineFormatMismatchError(
                f"entity key layout of {join_key!r} (serialization version {version}) differs "
                "from features/store/sqlite_reader.py; update it for the installed Feast"
            )


def _file_identity(path: Path) -> tuple[int, int, int]:
    """What tells one file at ``path`` from another put in its place: device, inode, mtime."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_mtime_ns


@dataclass
class _Opened:
    """A thread's connection, the identity of the file it opened and when that was checked."""

    conn: sqlite3.Connection
    identity: tuple[int, int, int]
    checked_at: float


class SqliteOnlineReader:
    """Reads entity rows of feature views from Feast's SQLite online store; one per store."""

    def __init__(
        self, store: FeatureStore, join_keys: Sequence[str], recheck_s: float = RECHECK_S
    ) -> None:
        config = store.config
        for key in join_keys:
            _check_key_layout(key, config.entity_key_serialization_version)
        self.path = Path(SqliteOnlineStore._get_db_path(config))
        self.project = config.project
        self.versioning = config.registry.enable_online_feature_view_versioning
        self.recheck_s = recheck_s
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        # One read-only connection per thread: sqlite3 connections are not shared across threads.
        opened: _Opened | None = getattr(self._local, "opened", None)
        now = time.monotonic()
        if opened is not None and now - opened.checked_at >= self.recheck_s:
            opened.checked_at = now
            try:
                same = _file_identity(self.path) == opened.identity
            except OSError:
                same = False  # removed: the stale connection must not answer for it
            if not same:
                opened.conn.close()
                opened = self._local.opened = None
        if opened is None:
            # The identity first: a file replaced between the two is caught at the next check.
            identity = _file_identity(self.path)
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=5)
            opened = self._local.opened = _Opened(conn, identity, now)
        return opened.conn

    def recheck(self) -> None:
        """Compare this thread's connection with the file at the path on its next read."""
        opened: _Opened | None = getattr(self._local, "opened", None)
        if opened is not None:
            opened.checked_at = -float("inf")

    def _table(self, fv: FeatureView) -> str:
        """The quoted name of Feast's online table of ``fv``."""
        return '"' + compute_table_id(self.project, fv, self.versioning).replace('"', '""') + '"'

    def sample_ids(
        self, fv: FeatureView, join_key: str, limit: int, since: np.datetime64 | None = None
    ) -> np.ndarray:
        """Ids of up to ``limit`` entities with a row of ``fv`` (stamped at or after ``since``)."""
        prefix = entity_keys(join_key, np.zeros(1, dtype="int64"))[0][:-8]
        where, params = "", []
        if since is not None:
            where = "where event_ts >= ? "
            params.append(int(np.datetime64(since, "s").astype("int64")))
        # DISTINCT walks the primary key (entity_key, feature_name) and stops at the limit.
        keys = (
            self._connection()
            .execute(
                f"select distinct entity_key from {self._table(fv)} {where}limit ?",
                [*params, limit],
            )
            .fetchall()
        )
        ours = [k for (k,) in keys if len(k) == len(prefix) + 8 and k.startswith(prefix)]
        return np.frombuffer(b"".join(k[-8:] for k in ours), dtype="<i8").astype("int64")

    def read(
        self, fv: FeatureView, join_key: str, ids: Sequence[int], features: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``features`` per id (NaN when unknown) and the rows' event times (NaT)."""
        requested = np.asarray(ids, dtype="int64")
        if len(requested) == 1:  # a single transaction: skip the sort
            unique, position = requested, np.zeros(1, dtype=np.intp)
        else:
            unique, position = np.unique(requested, return_inverse=True)
        values = np.full((len(unique), len(features)), np.nan)
        stamps = np.full(len(unique), np.datetime64("NaT"), dtype="datetime64[us]")
        column = {name: j for j, name in enumerate(features)}
        table = self._table(fv)
        keys = entity_keys(join_key, unique)
        rows: list[tuple] = []
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start : start + KEYS_PER_QUERY]
            rows += (
                self._connection()
                .execute(
                    "select entity_key, feature_name, value, event_ts from "
                    f"{table} where entity_key in ({','.join('?' * len(chunk))})",
                    chunk,
                )
                .fetchall()
            )
        rows = [r for r in rows if r[1] in column]
        if rows:
            key_bytes, names, blobs, events = zip(*rows, strict=True)
            # Entity keys end with the id's 8 little-endian bytes.
            found = np.frombuffer(b"".join(k[-8:] for k in key_bytes), dtype="<i8")
            where = np.searchsorted(unique, found)
            values[where, [column[name] for name in names]] = decode_values(blobs)
            stamps[where] = _epoch_seconds(events)
        return values[position], stamps[position]
