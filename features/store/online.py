"""Online reads of the entity feature views, and which rows are valid at a transaction time.

Validity (the fill rule of training, ``training.py``, and of serving, ``serving/features.py``): a
row serves transactions from its as-of time until the view's TTL has passed, never earlier
ones. An entity without a valid row (absent from the store, expired, or newer than the
transaction) gets the values the reference definitions give an entity without any transaction
in its windows, flagged ``features_missing = 1``; ``valid_at`` is that test, in one place.

Read path: one read per entity view of the Feast online store of the configured profile, in
Feast's tables, keys and serialization, so Feast stays the source of truth: on SQLite one query
decoded with numpy (``sqlite_reader``), elsewhere Feast's ``online_read``.
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
from features.store.sqlite_reader import SqliteOnlineReader


def _number(value: Value) -> float:
    """A Feast value as float (NaN when unset)."""
    kind = value.WhichOneof("val")
    return np.nan if kind is None else float(getattr(value, kind))


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
            if data is None:
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
