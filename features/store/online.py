"""Online reads of the entity feature views, and which rows are valid at a transaction time.

Validity (the fill rule of training, ``training.py``, and of serving, ``serving/features.py``): a
row serves transactions from its as-of time until the view's TTL has passed, never earlier
ones. An entity without a valid row (absent from the store, expired, or newer than the
transaction) gets the values the reference definitions give an entity without any transaction
in its windows, flagged ``features_missing = 1``; ``valid_at`` is that test, in one place.

Read path: one read per entity view of the Feast online store of the configured profile, in
Feast's tables, keys and serialization, so Feast stays the source of truth: on SQLite one query
decoded with numpy (``sqlite_reader``), elsewhere Feast's ``online_read``.
``sample_ids`` lists a few entities the store holds rows of (readiness checks read them back).
``store.get_online_features`` gives the same values (a test proves it) but spends most of its
time in generic request handling (docs/features.md has the measured figures).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features.store import sqlite_reader
from features.store.materialize import ENTITY_VIEWS
from features.store.sqlite_reader import SqliteOnlineReader, entity_keys

# A Redis sample scans at most this many rounds of SCAN_COUNT keys: an empty project must not
# walk a large shared keyspace.
SCAN_ROUNDS, SCAN_COUNT = 20, 1_000


def _number(value: Value) -> float:
    """A Feast value as float (NaN when unset)."""
    kind = value.WhichOneof("val")
    return np.nan if kind is None else float(getattr(value, kind))


def _glob_escape(raw: bytes) -> bytes:
    """``raw`` as a literal in a Redis glob pattern."""
    return b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in raw)


def valid_at(stamps: np.ndarray, moment: np.ndarray, ttl: np.timedelta64) -> np.ndarray:
    """Rows stamped at or before ``moment`` and no more than ``ttl`` before it (NaT: invalid)."""
    return ~np.isnat(stamps) & (stamps <= moment) & (stamps >= moment - ttl)


class OnlineFeatures:
    """Reads the entity feature views of one store; build once, call per request."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.config = store.config
        self.online_store = store._get_provider().online_store
        self.views = {name: store.get_feature_view(name) for name in ENTITY_VIEWS}
        self.features = {name: [f.name for f in fv.features] for name, fv in self.views.items()}
        self.ttl = {name: np.timedelta64(fv.ttl, "us") for name, fv in self.views.items()}
        self.sqlite = (
            SqliteOnlineReader(store, list(ENTITY_VIEWS.values()))
            if sqlite_reader.supports(store)
            else None
        )

    def entity_values(self, view: str, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Raw online values of ``view`` (NaN when unknown) and their as-of times (NaT)."""
        key = ENTITY_VIEWS[view]
        features = self.features[view]
        if self.sqlite is not None:
            return self.sqlite.read(self.views[view], key, ids, features)
        keys = [EntityKey(join_keys=[key], entity_values=[Value(int64_val=int(i))]) for i in ids]
        # A copy: the Redis store appends its timestamp key to the list it is given.
        rows = self.online_store.online_read(self.config, self.views[view], keys, list(features))
        values = np.full((len(ids), len(features)), np.nan)
        stamps = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[us]")
        for i, (ts, data) in enumerate(rows):
            # Feast's Redis store answers an unknown entity with unset values stamped at the
            # epoch: no row, as on SQLite.
            if data is None or (ts is not None and ts.timestamp() == 0):
                continue
            values[i] = [_number(data[f]) if f in data else np.nan for f in features]
            if ts is not None:
                stamps[i] = np.datetime64(ts.replace(tzinfo=None), "us")
        return values, stamps

    def valid_rows(
        self, view: str, ids: Sequence[int], when: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``entity_values`` of ``view`` and which rows are valid at ``when`` (UTC datetime64)."""
        values, stamps = self.entity_values(view, ids)
        moment = np.asarray(when, dtype="datetime64[us]")
        return values, stamps, valid_at(stamps, moment, self.ttl[view])

    def recheck(self) -> None:
        """Make this thread's next read notice a store file replaced since it was opened."""
        if self.sqlite is not None:
            self.sqlite.recheck()

    def sample_ids(
        self, view: str, limit: int, since: np.datetime64 | None = None
    ) -> np.ndarray | None:
        """Up to ``limit`` ids with a row of ``view`` stamped at or after ``since``.

        ``None`` when the store cannot list its entities: neither SQLite nor a single Redis
        server (a cluster would need a scan per node).
        """
        key = ENTITY_VIEWS[view]
        if self.sqlite is not None:
            return self.sqlite.sample_ids(self.views[view], key, limit, since)
        if getattr(self.config.online_store, "type", "") != "redis":
            return None
        # Some listed rows may be older than ``since``: list a few more than asked.
        ids = self._redis_ids(key, 4 * limit)
        if ids is None:
            return None
        if since is not None and len(ids):
            _, stamps = self.entity_values(view, ids)
            ids = ids[~np.isnat(stamps) & (stamps >= since)]
        return ids[:limit]

    def _redis_ids(self, join_key: str, limit: int) -> np.ndarray | None:
        """Ids of up to ``limit`` ``join_key`` entities among this project's Redis keys."""
        import redis

        # Feast's Redis key: the serialized entity key, then the project name.
        prefix = entity_keys(join_key, np.zeros(1, dtype="int64"))[0][:-8]
        project = self.config.project.encode()
        pattern = _glob_escape(prefix) + b"?" * 8 + _glob_escape(project)
        width = len(prefix) + 8 + len(project)
        client = self.online_store._get_client(self.config.online_store)
        if not isinstance(client, redis.Redis):  # a cluster client scans per node
            return None
        found: list[bytes] = []
        cursor = 0
        for _ in range(SCAN_ROUNDS):
            cursor, keys = client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
            found += [k for k in keys if len(k) == width and k.startswith(prefix)]
            if len(found) >= limit or cursor == 0:
                break
        raw = b"".join(k[len(prefix) : len(prefix) + 8] for k in found[:limit])
        return np.unique(np.frombuffer(raw, dtype="<i8").astype("int64"))
