"""Data profiles: whylogs behind our own :class:`Profile`, built in chunks on several processes.

A profile is a mergeable summary of a frame: per column the counts (rows, nulls, NaN,
infinities), the type counts, a KLL quantile sketch with mean and variance, a HyperLogLog
cardinality and, for integers and strings, the frequent items. Profiles of chunks merged equal
a profile of the whole frame: counts exactly, quantiles within the sketch's error.

Speed: whylogs' generic pandas path runs a Python lambda per value to count infinities. A
column without nulls or infinities (checked here, vectorised) is declared *homogeneous* to
whylogs, whose fast path then feeds the same values to the same metrics; a column with any
is profiled by the generic path. The numeric columns reach the worker processes through one
shared memory block (written once, read by each worker for its rows); other columns travel
pickled with their chunk.

whylogs reports usage to its makers on import unless ``WHYLOGS_NO_ANALYTICS`` is set (its
``api/usage_stats``), so it is imported only through :func:`import_whylogs`, after the process
defaults of fraudops.environ are in place.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudops.environ import set_process_defaults

if TYPE_CHECKING:
    from whylogs.core.view.column_profile_view import ColumnProfileView
    from whylogs.core.view.dataset_profile_view import DatasetProfileView

# Rows a worker profiles at a time, and the workers (the settings' monitoring_* defaults).
CHUNK_ROWS = 250_000
WORKERS = 2
_POOLS: dict[int, cf.ProcessPoolExecutor] = {}


def import_whylogs() -> ModuleType:
    """whylogs, imported with its usage reporting switched off."""
    set_process_defaults()
    import whylogs

    return whylogs


class Profile:
    """A mergeable whylogs profile of a frame, readable and writable as bytes."""

    def __init__(self, view: DatasetProfileView) -> None:
        self.view = view

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """A profile from the bytes of :meth:`to_bytes`."""
        import_whylogs()
        from whylogs.core.view.dataset_profile_view import DatasetProfileView

        return cls(DatasetProfileView.deserialize(data))

    def to_bytes(self) -> bytes:
        """The profile as whylogs' binary format (a .bin file of whylogs)."""
        return self.view.serialize()

    @classmethod
    def read(cls, path: Path) -> Profile:
        """Read a profile written by :meth:`write`."""
        return cls.from_bytes(Path(path).read_bytes())

    def write(self, path: Path) -> Path:
        """Write the profile to ``path`` atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(self.to_bytes())
        os.replace(tmp.name, path)
        return path

    def merge(self, other: Profile) -> Profile:
        """The profile of both profiles' rows together."""
        return Profile(self.view.merge(other.view))

    @property
    def columns(self) -> list[str]:
        """Names of the profiled columns, sorted."""
        return sorted(self.view.get_columns())

    def column(self, name: str) -> ColumnProfileView:
        """whylogs' view of one column (for the drift algorithms)."""
        column = self.view.get_column(name)
        if column is None:
            raise KeyError(f"column {name!r} is not in the profile (columns: {self.columns})")
        return column

    def count(self, name: str) -> int:
        """Rows seen in column ``name``, nulls included."""
        return int(self.column(name).get_metric("counts").n.value)

    def null_count(self, name: str) -> int:
        """Null (None or NaN) values of column ``name``."""
        return int(self.column(name).get_metric("counts").null.value)

    @property
    def rows(self) -> int:
        """Rows of the profiled frame (0 for an empty profile)."""
        return max((self.count(name) for name in self.columns), default=0)

    def _kll(self, name: str):
        metric = self.column(name).get_metric("distribution")
        if metric is None or metric.kll.value.is_empty():
            raise ValueError(f"column {name!r} has no numeric values in the profile")
        return metric

    def mean(self, name: str) -> float:
        """Mean of the numeric values of ``name``."""
        return float(self._kll(name).avg)

    def min(self, name: str) -> float:
        """Smallest numeric value of ``name``."""
        return float(self._kll(name).kll.value.get_min_value())

    def max(self, name: str) -> float:
        """Largest numeric value of ``name``."""
        return float(self._kll(name).kll.value.get_max_value())

    def quantiles(self, name: str, fractions: Sequence[float]) -> list[float]:
        """Quantiles of ``name`` at ``fractions`` (within the KLL sketch's rank error)."""
        return [float(q) for q in self._kll(name).kll.value.get_quantiles(list(fractions))]

    def histogram(self, name: str, edges: Sequence[float]) -> list[float]:
        """Share of the values of ``name`` in each interval between consecutive ``edges``.

        Values below the first edge count in the first interval, values from the last edge on
        in the last one.
        """
        pmf = self._kll(name).kll.value.get_pmf(list(edges[1:-1]))
        return [float(p) for p in pmf]


def _schema_types(frame: pd.DataFrame) -> dict[str, object]:
    """whylogs column types for the columns of ``frame`` that may take the fast path."""
    import_whylogs()
    from whylogs.core.preprocessing import ColumnProperties

    # The column's own dtype, not a Python type: whylogs 1.6 matches ``str`` against
    # ``np.unicode_``, which NumPy 2 removed, while an object dtype matches by name.
    types: dict[str, object] = {}
    for name in frame.columns:
        values = frame[name]
        kind = values.dtype.kind
        fast = (
            (kind == "f" and np.isfinite(values.to_numpy()).all())
            or kind in "iu"
            or (kind == "O" and len(values) > 0 and values.map(type).eq(str).all())
        )
        if fast:
            types[name] = (values.dtype, ColumnProperties.homogeneous)
    return types


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with booleans as 0/1 integers (whylogs counts booleans value by value)."""
    bools = [name for name in frame.columns if frame[name].dtype.kind == "b"]
    if not bools:
        return frame
    return frame.assign(**{name: frame[name].astype("int8") for name in bools})


def _profile_pandas(frame: pd.DataFrame) -> Profile:
    """One whylogs profile of ``frame`` in this process."""
    why = import_whylogs()
    from whylogs.core.schema import DatasetSchema

    # whylogs' fast path reads a string column's first value by label 0.
    frame = _prepared(frame).reset_index(drop=True)
    schema = DatasetSchema(types=_schema_types(frame))
    return Profile(why.log(pandas=frame, schema=schema).view())


@dataclass(frozen=True)
class _Chunk:
    """What a worker needs to profile rows ``start:stop``: where the numeric columns lie in
    the shared memory block, and the other columns' values of those rows."""

    block: str
    rows: int
    layout: tuple[tuple[str, str, int], ...]  # (column, dtype, byte offset)
    start: int
    stop: int
    others: dict[str, np.ndarray]
    order: tuple[str, ...]


def _share(frame: pd.DataFrame) -> tuple[SharedMemory, tuple[tuple[str, str, int], ...]]:
    """The numeric columns of ``frame`` copied once into a new shared memory block."""
    arrays = {
        name: np.ascontiguousarray(frame[name].to_numpy())
        for name in frame.columns
        if frame[name].dtype.kind in "iuf"
    }
    block = SharedMemory(create=True, size=max(sum(a.nbytes for a in arrays.values()), 1))
    layout, offset = [], 0
    for name, array in arrays.items():
        np.ndarray(array.shape, array.dtype, buffer=block.buf, offset=offset)[:] = array
        layout.append((name, array.dtype.str, offset))
        offset += array.nbytes
    return block, tuple(layout)


def _profile_chunk(chunk: _Chunk) -> bytes:
    """Worker: the profile bytes of one chunk of the shared frame."""
    # The workers share the caller's resource tracker, so attaching registers nothing new;
    # the caller unlinks the block when every chunk is done.
    block = SharedMemory(name=chunk.block)
    try:
        columns = {
            name: np.ndarray((chunk.rows,), dtype, buffer=block.buf, offset=offset)[
                chunk.start : chunk.stop
            ].copy()
            for name, dtype, offset in chunk.layout
        }
    finally:
        block.close()
    columns |= chunk.others
    frame = pd.DataFrame({name: columns[name] for name in chunk.order}, copy=False)
    return _profile_pandas(frame).to_bytes()


def merge_all(profiles: Sequence[Profile]) -> Profile:
    """The merge of several profiles, in order."""
    if not profiles:
        raise ValueError("no profile to merge")
    merged = profiles[0]
    for other in profiles[1:]:
        merged = merged.merge(other)
    return merged


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    """The process's pool of ``workers`` profiling processes, started on first use.

    Spawned, not forked: the caller may hold threads (Dagster, MLflow, OpenMP) a fork would
    copy mid-flight. A spawned worker pays whylogs' import once, so the pool is kept for the
    process's lifetime (or until :func:`shutdown_workers`).
    """
    pool = _POOLS.get(workers)
    if pool is None:
        set_process_defaults()  # the workers inherit the telemetry opt-outs
        context = multiprocessing.get_context("spawn")
        pool = _POOLS[workers] = cf.ProcessPoolExecutor(workers, mp_context=context)
    return pool


def shutdown_workers() -> None:
    """Stop the profiling processes (the next parallel profile starts new ones)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


def profile_frame(
    frame: pd.DataFrame, chunk_rows: int | None = None, workers: int | None = None
) -> Profile:
    """Profile ``frame`` in chunks of ``chunk_rows`` on ``workers`` processes, merged in order.

    A frame of one chunk, or one worker, is profiled in this process.
    """
    if frame.empty:
        raise ValueError("cannot profile an empty frame")
    chunk_rows = chunk_rows or CHUNK_ROWS
    workers = workers or WORKERS
    starts = range(0, len(frame), chunk_rows)
    if len(starts) == 1 or workers == 1:
        return merge_all([_profile_pandas(frame.iloc[s : s + chunk_rows]) for s in starts])
    frame = _prepared(frame)
    block, layout = _share(frame)
    shared = {name for name, _, _ in layout}
    others = [name for name in frame.columns if name not in shared]
    chunks = (
        _Chunk(
            block=block.name,
            rows=len(frame),
            layout=layout,
            start=s,
            stop=min(s + chunk_rows, len(frame)),
            others={name: frame[name].to_numpy()[s : s + chunk_rows] for name in others},
            order=tuple(frame.columns),
        )
        for s in starts
    )
    pool = _pool(workers)
    try:
        parts = [Profile.from_bytes(data) for data in pool.map(_profile_chunk, chunks)]
    except cf.process.BrokenProcessPool:
        _POOLS.pop(workers, None)  # a worker died (e.g. out of memory): start afresh next time
        raise
    finally:
        block.close()
        block.unlink()
    return merge_all(parts)
