"""Feast's file offline store, reading Delta sources through their transaction log.

Feast 0.67's file (dask) offline store accepts ``DeltaFormat`` sources but reads them with
``dask.dataframe.read_parquet`` on the table folder: every Parquet file ever written, including
those an overwrite removed from the Delta log. Our marts are rewritten by dbt, so that would
join stale and duplicate rows. This store reads a Delta source's current snapshot with
``deltalake`` instead, and only the rows a query can use: a point-in-time join never selects a
row older than the earliest event minus the TTL or newer than the latest event, and a
materialization only the rows of its interval. Everything else is the file store unchanged
(docs/features.md).
"""

import contextvars
import datetime as dt
from collections.abc import Callable
from typing import Literal

import dask.dataframe as dd
import pandas as pd
import pyarrow.compute as pc
from deltalake import DeltaTable
from feast.data_format import DeltaFormat
from feast.infra.offline_stores import dask as dask_store
from feast.infra.offline_stores.dask import DaskOfflineStore, DaskOfflineStoreConfig
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df

STORE_TYPE = "features.repo.offline_store.DeltaFileOfflineStore"
# Rows per dask partition of a Delta snapshot (bounded memory per task, parallel joins).
PARTITION_ROWS = 500_000

_parquet_reader = dask_store._read_datasource
# Inclusive [low, high] bounds of the source timestamps the running query can use.
_time_bounds: contextvars.ContextVar[tuple[pd.Timestamp, pd.Timestamp] | None] = (
    contextvars.ContextVar("delta_time_bounds", default=None)
)


def _is_delta(data_source: object) -> bool:
    options = getattr(data_source, "file_options", None)
    return isinstance(getattr(options, "file_format", None), DeltaFormat)


def read_source(data_source: object, repo_path: object) -> dd.DataFrame:
    """The current snapshot of a Delta source (within the query's bounds); else Feast's read."""
    if not _is_delta(data_source):
        return _parquet_reader(data_source, repo_path)
    dataset = DeltaTable(data_source.path).to_pyarrow_dataset()
    bounds = _time_bounds.get()
    row_filter = None
    if bounds is not None:
        column = pc.field(data_source.timestamp_field)
        row_filter = (column >= bounds[0]) & (column <= bounds[1])
    frame = dataset.to_table(filter=row_filter).to_pandas()
    return dd.from_pandas(frame, npartitions=max(1, len(frame) // PARTITION_ROWS + 1), sort=False)


def _bounded(job: dask_store.DaskRetrievalJob, low: object, high: object):
    """Make ``job`` read Delta sources within [low, high] and through the Delta log."""
    dask_store._read_datasource = read_source
    inner: Callable = job.evaluation_function
    bounds = None
    if low is not None and high is not None:
        bounds = (pd.Timestamp(low), pd.Timestamp(high))
        bounds = tuple(b.tz_localize("UTC") if b.tzinfo is None else b for b in bounds)

    def evaluate():
        token = _time_bounds.set(bounds)
        try:
            return inner()
        finally:
            _time_bounds.reset(token)

    job.evaluation_function = evaluate
    return job


class DeltaFileOfflineStoreConfig(DaskOfflineStoreConfig):
    """Offline store config: the file store with Delta-log-aware reads."""

    type: Literal["features.repo.offline_store.DeltaFileOfflineStore"] = STORE_TYPE


class DeltaFileOfflineStore(DaskOfflineStore):
    """The file (dask) offline store, reading Delta sources at their current version."""

    @staticmethod
    def get_historical_features(config, feature_views, feature_refs, entity_df, *args, **kwargs):
        """Point-in-time join as the file store does it, over bounded Delta snapshots."""
        job = DaskOfflineStore.get_historical_features(
            config, feature_views, feature_refs, entity_df, *args, **kwargs
        )
        low = high = None
        if isinstance(entity_df, pd.DataFrame) and len(entity_df):
            column = infer_event_timestamp_from_entity_df(dict(entity_df.dtypes))
            events = pd.to_datetime(entity_df[column], utc=True)
            ttls = [fv.ttl or dt.timedelta(0) for fv in feature_views]
            if ttls and all(ttl.total_seconds() > 0 for ttl in ttls):
                low, high = events.min() - max(ttls), events.max()
        return _bounded(job, low, high)

    @staticmethod
    def pull_latest_from_table_or_query(*args, **kwargs):
        """Latest rows per entity in a time range (materialization), over Delta snapshots."""
        job = DaskOfflineStore.pull_latest_from_table_or_query(*args, **kwargs)
        return _bounded(job, kwargs.get("start_date"), kwargs.get("end_date"))

    @staticmethod
    def pull_all_from_table_or_query(*args, **kwargs):
        """All rows in a time range, over Delta snapshots."""
        job = DaskOfflineStore.pull_all_from_table_or_query(*args, **kwargs)
        return _bounded(job, kwargs.get("start_date"), kwargs.get("end_date"))
