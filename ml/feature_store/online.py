"""Online lookup of the ``fraud_model_v1`` features for transactions, with the fill rule.

Fill rule (the same in training, ``training.py``): an entity whose feature row is missing from
the store, or is not the row valid at the transaction time (older than the transaction by more
than the view's TTL, or newer than the transaction), gets the values the reference definitions
give an entity without any transaction in its windows: counts 0, averages 0, risks 0. The row
is flagged ``features_missing = 1`` so nothing is invented silently.

Read path: one read per entity view of the Feast online store of the configured profile, in
Feast's tables, keys and serialization, so Feast stays the source of truth: on SQLite one query
decoded with numpy (``sqlite_reader``), elsewhere Feast's ``online_read``.
``store.get_online_features`` gives the same values (a test proves it) but spends most of its
time in generic request handling (docs/features.md has the measured figures).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from ml.feature_store import sqlite_reader
from ml.feature_store.materialize import ENTITY_VIEWS
from ml.feature_store.sqlite_reader import SqliteOnlineReader
from ml.features import FEATURE_COLUMNS, request_time_features

MISSING_FLAG = "features_missing"
TS_COLUMNS = {
    "customer_features": "customer_feature_timestamp",
    "terminal_features": "terminal_feature_timestamp",
}


def _number(value: Value) -> float:
    """A Feast value as float (NaN when unset)."""
    kind = value.WhichOneof("val")
    return np.nan if kind is None else float(getattr(value, kind))


class OnlineFeatures:
    """Reads the entity feature views of one store; build once, call per request."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.config = store.config
        self.online_store = store._get_provider().online_store
        self.views = {name: store.get_feature_view(name) for name in ENTITY_VIEWS}
        self.features = {name: [f.name for f in fv.features] for name, fv in self.views.items()}
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

    def lookup(
        self,
        customer_ids: Sequence[int],
        terminal_ids: Sequence[int],
        tx_datetime: Sequence[object],
        tx_amount: Sequence[float],
    ) -> pd.DataFrame:
        """The 15 FEATURE_COLUMNS per transaction, the fill flag and the two as-of times."""
        when = pd.to_datetime(list(tx_datetime), utc=True)
        moment = when.tz_localize(None).to_numpy().astype("datetime64[us]")
        amounts = np.asarray(tx_amount, dtype="float64")
        columns = request_time_features(moment.astype("int64"), amounts)
        missing = np.zeros(len(moment), dtype=bool)
        for view, ids in (("customer_features", customer_ids), ("terminal_features", terminal_ids)):
            values, stamps = self.entity_values(view, ids)
            ttl = np.timedelta64(self.views[view].ttl)
            valid = ~np.isnat(stamps) & (stamps <= moment) & (stamps >= moment - ttl)
            valid &= ~np.isnan(values).any(axis=1)
            values[~valid] = 0.0
            missing |= ~valid
            for j, name in enumerate(self.features[view]):
                columns[name] = values[:, j].astype("int64" if "_nb_tx_" in name else "float64")
            columns[TS_COLUMNS[view]] = pd.DatetimeIndex(stamps).tz_localize("UTC")
        columns[MISSING_FLAG] = missing.astype("int8")
        return pd.DataFrame(
            {c: columns[c] for c in [*FEATURE_COLUMNS, MISSING_FLAG, *TS_COLUMNS.values()]}
        )
