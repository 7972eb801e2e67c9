"""Bulk writer of Feast's SQLite online-store rows: one ``executemany`` in one transaction.

Feast's ``SqliteOnlineStore.online_write_batch`` runs one ``execute`` per entity and feature.
This writer produces the same rows (columns, upsert statement and values of Feast 0.67: see
``online_codec``) for whole batches, in primary-key order so SQLite appends to its B-trees
instead of jumping around. The table is Feast's, created by ``feast apply`` (``update``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import repeat

import numpy as np
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.utils import to_naive_utc

from ml.feature_store.online_codec import EncodedBatch

COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")


class OnlineTableMissingError(RuntimeError):
    """The view's online table does not exist: the definitions were not applied."""


def supports(store: FeatureStore) -> bool:
    """Whether this writer reproduces the store's SQLite rows (plain Feast SQLite tables)."""
    online = store.config.online_store
    return (
        getattr(online, "type", "") == "sqlite"
        and not getattr(online, "vector_enabled", False)
        and not getattr(online, "enable_openai_compatible_store", False)
    )


def _timestamp_value(stamp: dt.datetime) -> object:
    """The value Feast's connection stores for an event time: its registered adapter's output."""
    naive = to_naive_utc(stamp)
    # Feast registers (at import) the datetime adapter its writes go through; use the same.
    adapter = sqlite3.adapters.get((dt.datetime, sqlite3.PrepareProtocol))
    return adapter(naive) if adapter else naive


def rows(batch: EncodedBatch) -> Iterator[tuple]:
    """Feast's rows of a batch in (entity_key, feature_name) order."""
    # Entity keys share a prefix and end with the id's little-endian bytes, so their byte
    # order is the order of the byte-swapped ids; a stable sort keeps Feast's last-wins order.
    order = np.argsort(batch.ids.astype("<i8").view(">u8"), kind="stable")
    features = sorted(range(len(batch.features)), key=lambda i: batch.features[i])
    n, k = len(order), len(features)
    values = np.empty((n, k), dtype=object)
    texts = np.empty((n, k), dtype=object)
    for j, i in enumerate(features):
        values[:, j] = np.asarray(batch.values[i], dtype=object)[order]
        texts[:, j] = np.asarray(batch.texts[i], dtype=object)[order]
    keys = np.asarray(batch.entity_keys, dtype=object)[order].repeat(k)
    names = [batch.features[i] for i in features] * n
    stamps = [_timestamp_value(s) for s in batch.timestamps]
    if len(stamps) == 1:
        events: Iterable = repeat(stamps[0])
    else:
        events = np.asarray(stamps, dtype=object)[batch.ts_index[order]].repeat(k).tolist()
    return zip(
        keys.tolist(),
        names,
        values.ravel().tolist(),
        texts.ravel().tolist(),
        events,
        repeat(None),
    )


def _upsert(table: str) -> str:
    """Feast's upsert statement for ``table``."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
    quoted = '"' + table.replace('"', '""') + '"'
    return (
        f"insert into {quoted} ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))}) "
        f"on conflict(entity_key, feature_name) do update set {updates}"
    )


def write(store: FeatureStore, fv: FeatureView, batches: Iterable[EncodedBatch]) -> int:
    """Upsert the encoded rows of ``fv`` into Feast's SQLite table; entity rows written."""
    config = store.config
    table = compute_table_id(
        config.project, fv, config.registry.enable_online_feature_view_versioning
    )
    conn = sqlite3.connect(SqliteOnlineStore._get_db_path(config), timeout=30)
    written = 0
    try:
        exists = conn.execute(
            "select 1 from sqlite_master where type = 'table' and name = ?", (table,)
        ).fetchone()
        if not exists:
            raise OnlineTableMissingError(
                f"online table {table!r} not found: apply the definitions first "
                "(ml.feature_store.apply_definitions or `feast apply`)"
            )
        statement = _upsert(table)
        with conn:  # one transaction for every batch of the view
            for batch in batches:
                conn.executemany(statement, rows(batch))
                written += batch.num_rows
    finally:
        conn.close()
    return written
