"""Bulk writer of Feast's Redis online-store hashes, with Feast's timestamp deduplication.

Per entity, Feast 0.67's ``RedisOnlineStore.online_write_batch`` keeps one hash under the
serialized entity key followed by the project name: field ``_ts:<view>`` holds the event time
(a protobuf ``Timestamp``), and ``mmh3("<view>:<feature>")`` each value's ``ValueProto`` bytes.
It first reads every entity's stored time and skips rows that are not newer. This writer does
the same with pre-encoded bytes (``online_codec``): one pipeline of reads, one of ``HSET``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

from ml.feature_store.online_codec import EncodedBatch


def supports(store: FeatureStore) -> bool:
    """Whether this writer reproduces the store's Redis hashes (a single Redis server)."""
    online = store.config.online_store
    return getattr(online, "type", "") == "redis" and online.redis_type.value == "redis"


def _timestamp(stamp: dt.datetime) -> Timestamp:
    """Feast's stored event time of a row."""
    ts = Timestamp()
    ts.FromDatetime(make_tzaware(stamp))
    return ts


def _nanos(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def _stored_nanos(raw: list[bytes | None]) -> list[int]:
    """Stored event times in nanoseconds (0 when absent), parsing each distinct value once."""
    parsed: dict[bytes, int] = {}
    out = []
    for value in raw:
        if not value:
            out.append(0)
            continue
        if value not in parsed:
            ts = Timestamp()
            ts.ParseFromString(value)
            parsed[value] = _nanos(ts)
        out.append(parsed[value])
    return out


def _write_batch(client, store: FeatureStore, fv: FeatureView, batch: EncodedBatch) -> None:
    """Read the stored times of the batch's entities, then write the rows that are newer."""
    config = store.config
    view = compute_versioned_name(fv, config.registry.enable_online_feature_view_versioning)
    ts_key = f"_ts:{view}".encode()
    fields = [_mmh3(f"{view}:{name}") for name in batch.features]
    project = config.project.encode()
    keys = [key + project for key in batch.entity_keys]
    stamps = [_timestamp(s) for s in batch.timestamps]
    stamp_bytes = [ts.SerializeToString() for ts in stamps]
    stamp_nanos = [_nanos(ts) for ts in stamps]
    ttl = config.online_store.key_ttl_seconds
    dedup = not config.online_store.skip_dedup
    with client.pipeline(transaction=False) as pipe:
        stored = [0] * len(keys)
        if dedup:
            for key in keys:
                pipe.hget(key, ts_key)
            stored = _stored_nanos(pipe.execute())
        # Feast's rule: skip a row unless it is newer than the stored time and than any
        # earlier row of the same entity in this batch.
        latest: dict[bytes, int] = {}
        columns = list(zip(*batch.values, strict=True))
        for row, (key, index) in enumerate(zip(keys, batch.ts_index.tolist(), strict=True)):
            new = stamp_nanos[index]
            seen = max(stored[row], latest.get(key, 0))
            if dedup and seen and new <= seen:
                continue
            latest[key] = new
            mapping = [ts_key, stamp_bytes[index]]
            for field, value in zip(fields, columns[row], strict=True):
                mapping += (field, value)
            pipe.execute_command("HSET", key, *mapping)
            if ttl:
                pipe.expire(key, ttl)
        pipe.execute()


def write(store: FeatureStore, fv: FeatureView, batches: Iterable[EncodedBatch]) -> int:
    """Write the encoded rows of ``fv`` into Feast's Redis hashes; entity rows processed."""
    client = store._get_provider().online_store._get_client(store.config.online_store)
    written = 0
    for batch in batches:
        _write_batch(client, store, fv, batch)
        written += batch.num_rows
    return written
