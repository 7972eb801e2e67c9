"""Incremental, per-day materialization of the entity feature views into the online store.

Each as-of day is written by Feast's own materialization step, the provider's
``materialize_single_feature_view`` that ``FeatureStore.materialize`` runs per view: the offline
store reads the source rows of the interval, keeps the latest row per entity, converts them
with Feast's serializers and writes them with the online store's ``online_write_batch``. The
interval is that day's midnight alone, so ``features/repo/offline_store.py`` reads only that
day's rows (the Delta log's per-file statistics of ``feature_timestamp`` skip the other files).

The run then records one interval per view in the Feast registry, which stays the source of
truth for what is materialized (``feast`` CLI and UI show it): from the first requested day to
the newest one plus the view's TTL (the end of the newest row's validity), the convention the
registries already hold. ``FeatureStore.materialize`` would record every call's own interval,
which is why its per-view step is called instead. The online store keeps the latest row per
entity, so days only move forward: a day at or before the latest materialized one is skipped,
and of a backfill only the days still inside the views' TTL of the newest day are written (the
marts hold a row per entity and day, so older rows would be overwritten and already expired).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow.compute as pc
from deltalake import DeltaTable
from feast import FeatureStore, FeatureView
from feast.infra.provider import Provider, get_provider
from tqdm import tqdm

from fraudops.settings import Settings

ENTITY_VIEWS = {"customer_features": "customer_id", "terminal_features": "terminal_id"}
AS_OF_DAY = "feature_date"


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


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _quiet_progress(total: int) -> tqdm:
    """Feast's progress bar, switched off: runs log their report instead."""
    return tqdm(total=total, disable=True)


def _entities(mart: DeltaTable, key: str, day: dt.date) -> int:
    """Distinct entities of ``day`` in the mart: the rows Feast writes for it (one per entity)."""
    keys = mart.to_pyarrow_table(columns=[key], filters=[(AS_OF_DAY, "=", day)]).column(key)
    return pc.count_distinct(keys).as_py()


def _write_day(
    store: FeatureStore, provider: Provider, fv: FeatureView, mart: DeltaTable, day: dt.date
) -> int:
    """Write one as-of day of ``fv`` through Feast's materialization; entity rows written."""
    moment = _midnight(day)
    # Feast's interval is inclusive at both ends: [midnight, midnight] is that day's rows only.
    provider.materialize_single_feature_view(
        config=store.config,
        feature_view=fv,
        start_date=moment,
        end_date=moment,
        registry=store.registry,
        project=store.project,
        tqdm_builder=_quiet_progress,
    )
    return _entities(mart, ENTITY_VIEWS[fv.name], day)


def materialize_days(
    store: FeatureStore, settings: Settings, days: list[dt.date]
) -> MaterializationReport:
    """Write the mart rows of ``days`` (as-of days) to the online store, oldest first."""
    report = MaterializationReport()
    provider: Provider | None = None
    for view in ENTITY_VIEWS:
        latest = latest_materialized(store, view)
        todo = sorted(d for d in set(days) if latest is None or d > latest.date())
        report.rows[view] = 0
        if not todo:
            continue
        mart = mart_table(settings, view)
        fv = store.get_feature_view(view)
        provider = provider or get_provider(store.config)
        newest = _midnight(todo[-1])
        for day in todo:
            if _midnight(day) + fv.ttl > newest:
                report.rows[view] += _write_day(store, provider, fv, mart, day)
        store.registry.apply_materialization(fv, store.project, _midnight(todo[0]), newest + fv.ttl)
        report.days.extend(d for d in todo if d not in report.days)
    latest = [latest_materialized(store, v) for v in ENTITY_VIEWS]
    report.latest_as_of = min(latest) if all(latest) else None
    report.days.sort()
    return report


def materialize_pending(store: FeatureStore, settings: Settings) -> MaterializationReport:
    """Incremental materialization: every mart day not yet in the online store."""
    return materialize_days(store, settings, pending_days(store, settings))
