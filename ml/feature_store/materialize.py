"""Incremental, per-day materialization of the entity feature views into the online store.

Feast's own ``materialize`` reads the whole source for every call and filters it; this path
reads one ``feature_date`` of each mart (the marts are partitioned by month, and the Delta log's
per-file statistics of ``feature_date`` limit the read to that month's files), writes it into
Feast's online store in Feast's exact format, then records the interval in the Feast registry,
which stays the source of truth for what is materialized (``feast`` CLI and UI show it). The
online store keeps the latest row per entity, so days only move forward: a day at or before the
latest materialized one is skipped, and of a backfill only the days still inside the views' TTL
of the newest day are written (the marts hold a row per entity and day, so older rows would be
overwritten and already expired).

Writing: Feast's SQLite and Redis stores serialize one protobuf per value and write one row per
entity and feature (SQLite) or one hash per entity (Redis) in Python loops. For those two stores
``online_codec`` encodes whole batches with numpy (entity keys, ``ValueProto`` bytes, value
texts; sample rows checked against Feast's serializers) and ``sqlite_writer`` / ``redis_writer``
write them in bulk: the same bytes Feast writes, read back by Feast's ``online_read`` and
``get_online_features`` (tests/features/test_online_writers.py). Anything outside that scope
(another store, a vector or OpenAI-compatible SQLite store, another key serialization, other
value types, null keys) goes through Feast's ``_convert_arrow_to_proto`` and
``online_write_batch`` unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from deltalake import DeltaTable
from feast import FeatureStore, FeatureView
from feast.utils import _convert_arrow_to_proto

from fraudops.settings import Settings
from ml.feature_store import redis_writer, sqlite_writer
from ml.feature_store.online_codec import encode_batch

ENTITY_VIEWS = {"customer_features": "customer_id", "terminal_features": "terminal_id"}
AS_OF_DAY = "feature_date"
# Rows per online write batch: bounded memory, and Redis pipelines of a sensible size.
WRITE_BATCH_ROWS = 10_000


class MartNotFoundError(FileNotFoundError):
    """A feature mart the feature store reads has not been built yet."""


@dataclass
class MaterializationReport:
    """What a materialization wrote."""

    days: list[dt.date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    latest_as_of: dt.datetime | None = None

    @property
    def entities_written(self) -> int:
        """Entity rows written over all views and days."""
        return sum(self.rows.values())


def mart_table(settings: Settings, name: str) -> DeltaTable:
    """The Delta table of ``marts/<name>``, or a clear error when dbt has not built it."""
    uri = settings.table_uri("marts", name)
    options = settings.storage_options or None
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        raise MartNotFoundError(
            f"no Delta table at {uri}: build the dbt marts first (Dagster assets "
            f"marts/{name}, or `dbt build` in dbt_project/)"
        )
    return DeltaTable(uri, storage_options=options)


def mart_days(settings: Settings, view: str) -> list[dt.date]:
    """The as-of days present in the mart behind ``view``."""
    table = mart_table(settings, view)
    values = table.to_pyarrow_table(columns=[AS_OF_DAY]).column(AS_OF_DAY).unique()
    return sorted(values.to_pylist())


def latest_materialized(store: FeatureStore, view: str) -> dt.datetime | None:
    """The newest as-of (feature timestamp) of ``view`` in the online store, per the registry."""
    fv = store.get_feature_view(view)
    ends = [end for _, end in fv.materialization_intervals]
    if not ends:
        return None
    return max(ends) - fv.ttl


def pending_days(store: FeatureStore, settings: Settings) -> list[dt.date]:
    """Mart days newer than what every entity view has materialized."""
    days: set[dt.date] = set()
    for view in ENTITY_VIEWS:
        latest = latest_materialized(store, view)
        days |= {d for d in mart_days(settings, view) if latest is None or d > latest.date()}
    return sorted(days)


def _feast_write(store: FeatureStore, fv: FeatureView, key: str, batches: list) -> None:
    """Write batches with Feast's own conversion and online store (the reference path)."""
    provider = store._get_provider()
    join_keys = {key: store.get_entity(fv.entities[0]).value_type}
    for batch in batches:
        rows = _convert_arrow_to_proto(batch, fv, join_keys)
        provider.online_write_batch(store.config, fv, rows, progress=None)


def _bulk_writer(store: FeatureStore) -> Callable | None:
    """The bulk writer of the store's online format, or ``None`` (use Feast's path)."""
    if sqlite_writer.supports(store):
        return sqlite_writer.write
    if redis_writer.supports(store):
        return redis_writer.write
    return None


def _write_day(
    store: FeatureStore, settings: Settings, fv: FeatureView, key: str, day: dt.date
) -> int:
    """Write one as-of day of ``fv`` to the online store; the number of entity rows."""
    columns = [key, fv.batch_source.timestamp_field, *[f.name for f in fv.features]]
    table = mart_table(settings, fv.name).to_pyarrow_table(
        columns=columns, filters=[(AS_OF_DAY, "=", day)]
    )
    batches = table.to_batches(max_chunksize=WRITE_BATCH_ROWS)
    writer = _bulk_writer(store)
    if writer is not None:
        key_type = store.get_entity(fv.entities[0]).value_type
        version = store.config.entity_key_serialization_version
        encoded = [encode_batch(b, fv, key, key_type, version) for b in batches]
        # All or nothing: a day is written by one path, never half by each.
        if all(e is not None for e in encoded):
            writer(store, fv, encoded)
            return table.num_rows
    _feast_write(store, fv, key, batches)
    return table.num_rows


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def materialize_days(
    store: FeatureStore, settings: Settings, days: list[dt.date]
) -> MaterializationReport:
    """Write the mart rows of ``days`` (as-of days) to the online store, oldest first."""
    report = MaterializationReport()
    for view, key in ENTITY_VIEWS.items():
        latest = latest_materialized(store, view)
        todo = sorted(d for d in set(days) if latest is None or d > latest.date())
        report.rows[view] = 0
        if not todo:
            continue
        fv = store.get_feature_view(view)
        newest = _midnight(todo[-1])
        for day in todo:
            if _midnight(day) + fv.ttl > newest:
                report.rows[view] += _write_day(store, settings, fv, key, day)
        store.registry.apply_materialization(fv, store.project, _midnight(todo[0]), newest + fv.ttl)
        report.days.extend(d for d in todo if d not in report.days)
    latest = [latest_materialized(store, v) for v in ENTITY_VIEWS]
    report.latest_as_of = min(latest) if all(latest) else None
    report.days.sort()
    return report


def materialize_pending(store: FeatureStore, settings: Settings) -> MaterializationReport:
    """Incremental materialization: every mart day not yet in the online store."""
    return materialize_days(store, settings, pending_days(store, settings))
