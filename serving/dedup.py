"""One prediction-log row per (transaction_id, served_by): the first answer logged wins.

The writer keeps the keys of the most recently logged rows (``capacity`` of them, seeded at
start-up from the table's rows with the newest ``scored_at``) and drops a row whose key is among
them, or earlier in the same write: a retry of a transaction, a duplicate inside a batch
request, a row replayed from the journal of a process killed after its commit. Keys join the
window only once their commit has succeeded, so a failed write can never make its own retry
look like a copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def _newest_per_file(actions: pa.Table) -> np.ndarray:
    """Each file's newest ``scored_at`` (int64 microseconds) from its statistics; a file
    without them counts as newest, so it is always read."""
    unknown = np.iinfo("int64").max
    if "max.scored_at" not in actions.column_names:
        return np.full(actions.num_rows, unknown, dtype="int64")
    return _micros(actions.column("max.scored_at"), unknown)


def _micros(stamps: pa.ChunkedArray, missing: int) -> np.ndarray:
    """Timestamps as int64 microseconds, ``missing`` for nulls."""
    micros = stamps.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return pc.fill_null(micros, missing).to_numpy()


def newest_keys(table: DeltaTable, limit: int) -> list[int]:
    """Keys of the ``limit`` rows with the newest ``scored_at``, oldest first (the order in
    which the window forgets them).

    Files are read newest first by their ``scored_at`` statistics, not by modification time:
    compaction rewrites old rows into new files. Reading stops once ``limit`` rows read are
    newer than anything an unread file can hold.
    """
    if limit <= 0:
        return []
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    newest = _newest_per_file(actions)
    order = np.argsort(-newest, kind="stable")
    paths = actions.column("path").to_pylist()
    # Fragment paths are table-relative like the add actions' (checked on a local table).
    fragments = {f.path: f for f in table.to_pyarrow_dataset().get_fragments()}
    stamps: list[np.ndarray] = []
    keys: list[int] = []
    for position, index in enumerate(order.tolist()):
        fragment = fragments.get(paths[index])
        if fragment is None:
            continue
        rows = fragment.to_table(columns=["scored_at", "transaction_id", "served_by"])
        stamps.append(_micros(rows.column("scored_at"), np.iinfo("int64").min))
        keys += row_keys(
            rows.column("transaction_id").to_numpy(), rows.column("served_by").to_numpy()
        )
        if len(keys) >= limit and position + 1 < len(order):
            bound = newest[order[position + 1]]
            if int((np.concatenate(stamps) > bound).sum()) >= limit:
                break
    if not keys:
        return []
    chosen = np.argsort(np.concatenate(stamps), kind="stable")[-limit:]
    return [keys[i] for i in chosen.tolist()]
