"""Feast at the reference scale (or ``--scale`` times it): materialization, lookups, retrieval.

Marts are synthetic (contract schema, random values) for 5,000 customers and 10,000 terminals
per unit of scale (``--scale 10``: 50,000 and 100,000): the cost of the feature store depends on
sizes, not on values. Figures:
- materialization of one as-of day (every entity of both views): seconds and entity rows/s of
  ``materialize_days`` (per view, Feast's own materialization step over that day: the Delta
  offline store's bounded read, Feast's conversion and ``online_write_batch``; then the row
  count and the registry update), medians over several days, with the process's peak memory;
  Feast's public ``store.materialize`` over the same one-day interval; and two plain
  ``sqlite3.executemany`` baselines timed interleaved with ours in the same run: the day's
  entity rows, wide (one row per entity), into a plain table; and the rows Feast's online
  store holds after the day (one per entity and feature, value bytes, keys), upserted into a
  plain table with the same primary key, which isolates what the materialization adds to the
  write itself; when Redis is reachable, the same two Feast paths into Redis;
- online lookup for one transaction over >= 2,000 random entity pairs, p50 and p99 of:
  ``entity_reads``, the 12 stored features of ``fraud_model_v1`` (one read per entity view of
  Feast's online tables); ``single_view_read``, one of them; ``model_inputs``, all 15 model
  inputs the way the scoring service builds them (its Feast source: entity reads and
  validity; then request-time features, numpy); ``get_online_features``, Feast's generic API
  with the feature service; on SQLite and, when reachable, Redis;
- historical retrieval of a 7-day training window.

``--scale N`` writes ``var/bench/feast_xN.json`` (scale 1: ``var/bench/feast.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import sqlite3
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from benchmarks.common import PeakMemory, write_figures
from features import store as feature_store
from features.store.materialize import ENTITY_VIEWS, mart_table
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings, get_settings
from serving.features import FeastFeatureSource
from serving.scoring import model_inputs

CUSTOMERS, TERMINALS = 5_000, 10_000  # per unit of scale
FIRST_DAY = dt.date(2018, 4, 2)
MART_DAYS = 40
MATERIALIZE_DAYS = 5  # as-of days timed per materialization path (medians)
NATIVE_DAYS = 2  # days timed through Feast's public ``store.materialize``
LOOKUPS = 2_000
WINDOW_DAYS = 7
TX_PER_CUSTOMER_DAY = 2.0  # the reference simulation's mean (uniform in [0, 4])
ONLINE_COLUMNS = "entity_key, feature_name, value, value_text, event_ts, created_ts"


@dataclass(frozen=True)
class Sizes:
    """Entities per view at the benchmark's scale."""

    customers: int
    terminals: int

    @property
    def entities(self) -> int:
        """Entity rows of one as-of day over both views."""
        return self.customers + self.terminals


def _mart(key: str, features: list[str], n: int, rng: np.random.Generator) -> pa.Table:
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(MART_DAYS)]
    ids = np.tile(np.arange(1, n + 1, dtype="int64"), len(days))
    day = np.repeat(np.array(days, dtype="datetime64[D]"), n)
    columns = {
        key: ids,
        "feature_timestamp": pd.to_datetime(day).tz_localize("UTC"),
        "feature_date": day,
    }
    for name in features:
        columns[name] = (
            rng.poisson(5, len(ids)).astype("int64")
            if "_nb_tx_" in name
            else rng.random(len(ids)) * 100
        )
    return pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)


def _write_marts(settings: Settings, sizes: Sizes, rng: np.random.Generator) -> None:
    for name, key, features, n in (
        ("customer_features", "customer_id", CUSTOMER_FEATURES, sizes.customers),
        ("terminal_features", "terminal_id", TERMINAL_FEATURES, sizes.terminals),
    ):
        table = _mart(key, features, n, rng)
        uri = settings.table_uri("marts", name)
        write_deltalake(uri, table, mode="overwrite", partition_by=["feature_date"])


def _sqlite_baseline(settings: Settings, day: dt.date) -> float:
    """Seconds to write one day's entity rows with plain ``executemany`` (one transaction)."""
    rows = []
    for name, key in ENTITY_VIEWS.items():
        table = mart_table(settings, name).to_pyarrow_table(filters=[("feature_date", "=", day)])
        frame = table.drop_columns(["feature_date"]).to_pandas()
        frame["feature_timestamp"] = frame["feature_timestamp"].astype("int64")
        rows.append((name, key, list(frame.itertuples(index=False, name=None)), frame.columns))
    path = settings.home / "baseline.db"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    with sqlite3.connect(path) as conn:
        for name, key, data, columns in rows:
            conn.execute(f"create table {name} ({', '.join(columns)}, primary key ({key}))")
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"insert or replace into {name} values ({marks})", data)
    return time.perf_counter() - start


def _online_rows(settings: Settings) -> dict[str, list[tuple]]:
    """Per view, the rows Feast's SQLite online store holds (one per entity and feature)."""
    path = settings.home / "feast" / "online.db"
    with sqlite3.connect(path) as conn:
        return {
            name: conn.execute(
                f'select {ONLINE_COLUMNS} from "{settings.feast_project}_{name}"'
            ).fetchall()
            for name in ENTITY_VIEWS
        }


def _sqlite_online_layout_baseline(settings: Settings) -> float:
    """Seconds to upsert the online store's rows of one day with plain ``executemany``.

    The rows Feast's materialization just stored (entity key, feature, value bytes, text,
    times) into a plain table with the same primary key already holding a row per key, as in
    a daily run; the rows are read before the clock starts.
    """
    rows = _online_rows(settings)
    path = settings.home / "baseline_online.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        for name, data in rows.items():
            conn.execute(
                f"create table {name} (entity_key blob, feature_name text, value blob, "
                "value_text text, event_ts timestamp, created_ts timestamp, "
                "primary key (entity_key, feature_name))"
            )
            conn.executemany(f"insert into {name} values (?, ?, ?, ?, ?, ?)", data)
    start = time.perf_counter()
    with sqlite3.connect(path) as conn:
        for name, data in rows.items():
            conn.executemany(f"insert or replace into {name} values (?, ?, ?, ?, ?, ?)", data)
    return time.perf_counter() - start


def _timed_days(store, settings: Settings, days: list[dt.date], native: bool) -> list[float]:
    """Seconds per as-of day: our ``materialize_days``, or Feast's public ``store.materialize``."""
    times = []
    for day in days:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        t0 = time.perf_counter()
        if native:
            store.materialize(start_date=start, end_date=start, feature_views=list(ENTITY_VIEWS))
        else:
            feature_store.materialize_days(store, settings, [day])
        times.append(time.perf_counter() - t0)
    return times


def _days(count: int) -> list[dt.date]:
    """The newest ``count`` as-of days of the marts, oldest first."""
    return [FIRST_DAY + dt.timedelta(days=i) for i in range(MART_DAYS - count, MART_DAYS)]


def _materialization(settings: Settings, sizes: Sizes) -> dict[str, float]:
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    days = _days(MATERIALIZE_DAYS)
    # The first write creates every row; the timed days update them, as a daily run does.
    feature_store.materialize_days(store, settings, [days[0] - dt.timedelta(days=1)])
    ours, baseline, layout = [], [], []
    with PeakMemory() as memory:
        for day in days:  # interleaved, so all see the same machine load
            ours += _timed_days(store, settings, [day], native=False)
            baseline.append(_sqlite_baseline(settings, day))
            layout.append(_sqlite_online_layout_baseline(settings))
    # Feast's public API over days already written: the SQLite store upserts them all again.
    native = _timed_days(store, settings, days[-NATIVE_DAYS:], native=True)
    ours_s, native_s = statistics.median(ours), statistics.median(native)
    baseline_s, layout_s = statistics.median(baseline), statistics.median(layout)
    rows = sizes.entities
    return {
        "materialize_rows": rows,
        "materialize_s": round(ours_s, 3),
        "materialize_rows_per_s": round(rows / ours_s),
        "materialize_peak_mib": round(memory.peak_mib),
        "feast_materialize_s": round(native_s, 3),
        "feast_materialize_rows_per_s": round(rows / native_s),
        "sqlite_executemany_s": round(baseline_s, 4),
        "sqlite_executemany_rows_per_s": round(rows / baseline_s),
        "materialize_ratio_to_sqlite": round(baseline_s / ours_s, 3),
        "sqlite_online_layout_executemany_s": round(layout_s, 4),
        "materialize_ratio_to_sqlite_online_layout": round(layout_s / ours_s, 3),
    }


def _redis_materialization(settings: Settings, sizes: Sizes) -> dict[str, float]:
    """``materialize_days`` and Feast's public ``store.materialize`` into Redis."""
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    days = _days(MATERIALIZE_DAYS + NATIVE_DAYS)
    feature_store.materialize_days(store, settings, [days[0] - dt.timedelta(days=1)])
    # Feast's Redis store skips rows not newer than the stored ones: each path times newer days.
    native = statistics.median(_timed_days(store, settings, days[:NATIVE_DAYS], native=True))
    ours = statistics.median(_timed_days(store, settings, days[NATIVE_DAYS:], native=False))
    rows = sizes.entities
    return {
        "redis_materialize_s": round(ours, 3),
        "redis_materialize_rows_per_s": round(rows / ours),
        "redis_feast_materialize_s": round(native, 3),
        "redis_feast_materialize_rows_per_s": round(rows / native),
    }


def _percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
    }


def _lookups(settings: Settings, sizes: Sizes, label: str) -> dict[str, float]:
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    last = FIRST_DAY + dt.timedelta(days=MART_DAYS - 1)
    feature_store.materialize_days(store, settings, [last])
    online = feature_store.OnlineFeatures(store)
    rng = np.random.default_rng(1)
    customers = rng.integers(1, sizes.customers + 1, LOOKUPS).tolist()
    terminals = rng.integers(1, sizes.terminals + 1, LOOKUPS).tolist()
    when = pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=13)
    service = store.get_feature_service("fraud_model_v1")
    # The scoring service's path: its Feast source, then the 15 inputs as a numpy matrix.
    source = FeastFeatureSource(store)
    epoch_us = np.array([when.value // 1_000], dtype="int64")
    moment, amount = epoch_us.astype("datetime64[us]"), np.array([42.0])
    timings: dict[str, list[float]] = {
        "single_view_read": [],
        "entity_reads": [],
        "model_inputs": [],
        "get_online_features": [],
    }
    for c, t in zip(customers, terminals, strict=True):
        t_single = time.perf_counter()
        online.entity_values("terminal_features", [t])
        timings["single_view_read"].append(time.perf_counter() - t_single)
        t0 = time.perf_counter()
        online.entity_values("customer_features", [c])
        online.entity_values("terminal_features", [t])
        t1 = time.perf_counter()
        found = source.lookup([c], [t], moment)
        model_inputs(epoch_us, amount, found.values)
        t2 = time.perf_counter()
        store.get_online_features(
            features=service,
            entity_rows=[
                {"customer_id": c, "terminal_id": t, "tx_datetime": when, "tx_amount": 42.0}
            ],
        ).to_dict()
        t3 = time.perf_counter()
        timings["entity_reads"].append(t1 - t0)
        timings["model_inputs"].append(t2 - t1)
        timings["get_online_features"].append(t3 - t2)
    figures = {}
    for name, times in timings.items():
        for stat, value in _percentiles(times).items():
            figures[f"{label}_{name}_{stat}"] = value
    return figures


def _historical(settings: Settings, sizes: Sizes) -> dict[str, float]:
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    rng = np.random.default_rng(2)
    n = int(sizes.customers * TX_PER_CUSTOMER_DAY * WINDOW_DAYS)
    first = pd.Timestamp(FIRST_DAY + dt.timedelta(days=30), tz="UTC")
    entities = pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype="int64"),
            "customer_id": rng.integers(1, sizes.customers + 1, n),
            "terminal_id": rng.integers(1, sizes.terminals + 1, n),
            "tx_datetime": first
            + pd.to_timedelta(rng.integers(0, WINDOW_DAYS * 86_400, n), unit="s"),
            "tx_amount": rng.random(n) * 100,
        }
    )
    start = time.perf_counter()
    features = feature_store.historical_features(store, entities)
    elapsed = time.perf_counter() - start
    return {
        "historical_rows": n,
        "historical_s": round(elapsed, 2),
        "historical_rows_missing": int(features.isna().any(axis=1).sum()),
    }


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _drop_redis_keys(url: str, project: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"*{project}*", count=1000):
        client.delete(key)


def _on_redis(home: Path, project: str, marts: Settings, run: Callable[[Settings], dict]) -> dict:
    """``run`` with a Redis online store over the marts of ``marts``; its keys dropped after."""
    settings = get_settings(
        home=home,
        lakehouse_uri=marts.lakehouse_root,
        feast_project=project,
        feast_online_store="redis",
    )
    try:
        return run(settings)
    finally:
        _drop_redis_keys(settings.redis_url, project)


def main(scale: int = 1) -> dict:
    """Run the Feast benchmarks at ``scale`` and write var/bench/feast.json (or feast_xN.json)."""
    warnings.filterwarnings("ignore")
    sizes = Sizes(CUSTOMERS * scale, TERMINALS * scale)
    work = Path(tempfile.mkdtemp(prefix="bench_feast_"))
    project = f"bench{uuid.uuid4().hex[:8]}"
    try:
        settings = get_settings(home=work / "var", feast_project=project)
        _write_marts(settings, sizes, np.random.default_rng(0))
        figures: dict[str, object] = {"scale": scale, "entities": sizes.entities}
        figures |= _materialization(settings, sizes)
        lookup_settings = get_settings(
            home=work / "lookup", lakehouse_uri=settings.lakehouse_root, feast_project=project
        )
        figures |= _lookups(lookup_settings, sizes, "sqlite")
        if _redis_up():
            figures |= _on_redis(
                work / "redis_materialize",
                f"{project}m",
                settings,
                lambda redis_settings: _redis_materialization(redis_settings, sizes),
            )
            figures |= _on_redis(
                work / "redis",
                f"{project}r",
                settings,
                lambda redis_settings: _lookups(redis_settings, sizes, "redis"),
            )
        figures |= _historical(settings, sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, value in figures.items():
        print(f"{name:>45}: {value}")
    write_figures("feast" if scale == 1 else f"feast_x{scale}", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="Multiply customers and terminals.")
    main(parser.parse_args().scale)
