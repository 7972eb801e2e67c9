"""One prediction-log row per (transaction_id, served_by): the first answer logged wins.

The writer keeps the keys of the most recently logged rows (``capacity`` of them, seeded at
start-up from the newest files of the Delta table) and drops a row whose key is among them, or
earlier in the same write: a retry of a transaction, a duplicate inside a batch request, a row
replayed from the journal of a process killed after its commit. Keys join the window only once
their commit has succeeded, so a failed write can never make its own retry look like a copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from fraudops.contracts import CHALLENGER


def row_keys(transaction_ids: np.ndarray, served_by: np.ndarray) -> list[int]:
    """One integer per (transaction id, role): the id doubled, plus one for the challenger."""
    ids = np.asarray(transaction_ids, dtype="int64").tolist()
    roles = (np.asarray(served_by, dtype=object) == CHALLENGER).tolist()
    return [2 * tid + role for tid, role in zip(ids, roles, strict=True)]


class RecentKeys:
    """The keys of the last ``capacity`` logged rows, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[int] = deque()
        self._keys: set[int] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[int]) -> None:
        """Remember ``keys`` (committed rows); forget the oldest beyond the capacity."""
        for key in keys:
            if key not in self._keys:
                self._keys.add(key)
                self._order.append(key)
        while len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())

    def first_seen(self, keys: list[int]) -> np.ndarray:
        """A mask of the rows to write: neither in the window nor earlier in ``keys``."""
        keep = np.zeros(len(keys), dtype=bool)
        batch: set[int] = set()
        for i, key in enumerate(keys):
            if key not in self._keys and key not in batch:
                batch.add(key)
                keep[i] = True
        return keep


def filter_new(table: pa.Table, window: RecentKeys | None) -> tuple[pa.Table, list[int]]:
    """The rows of ``table`` to write and their keys (all of them without a window)."""
    keys = row_keys(table.column("transaction_id").to_numpy(), table.column("served_by").to_numpy())
    if window is None:
        return table, keys
    keep = window.first_seen(keys)
    if keep.all():
        return table, keys
    return table.filter(pa.array(keep)), [k for k, flag in zip(keys, keep, strict=True) if flag]


def newest_keys(table: DeltaTable, limit: int) -> list[int]:
    """Keys of (at least) the ``limit`` newest rows of the table, read from its newest files."""
    if limit <= 0:
        return []
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    order = np.argsort(-actions.column("modification_time").to_numpy(), kind="stable")
    counts = actions.column("num_records").to_numpy()[order]
    needed = int(np.searchsorted(np.cumsum(counts), limit)) + 1
    paths = set(actions.column("path").take(pa.array(order[:needed])).to_pylist())
    dataset = table.to_pyarrow_dataset()
    # Fragment paths are table-relative like the add actions' (checked on a local table).
    fragments = [f for f in dataset.get_fragments() if f.path in paths]
    if not fragments:
        return []
    chosen = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    rows = chosen.to_table(columns=["transaction_id", "served_by"])
    return row_keys(rows.column("transaction_id").to_numpy(), rows.column("served_by").to_numpy())
