"""One row per key in a raw table: which keys another day's partition already holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse import delta


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    at = np.searchsorted(sorted_keys, keys).clip(max=sorted_keys.size - 1)
    return sorted_keys[at] == keys


class KeyLedger:
    """Keys of a raw table outside the partitions a run replaces, plus the keys the run claims.

    Only the key column is read, and only from files of other partitions whose min/max
    statistics overlap the keys asked about, so a daily run against a large table usually
    reads no data file at all.
    """

    def __init__(
        self,
        uri: str,
        key: str,
        partition_column: str,
        replaced: Sequence[dt.date],
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.key = key
        self._table = delta.open_table(uri, storage_options)
        replaced = sorted(set(replaced))
        listed = ", ".join(f"'{d.isoformat()}'" for d in replaced)
        self._outside_sql = f"{partition_column} NOT IN ({listed})" if replaced else "TRUE"
        self._outside = ~ds.field(partition_column).isin(pa.array(replaced, pa.date32()))
        self._claimed: list[tuple[int, int, np.ndarray]] = []

    def taken(self, keys: np.ndarray) -> np.ndarray:
        """For each key, whether another partition or an earlier claim of this run holds it."""
        keys = np.asarray(keys, dtype="int64")
        if keys.size == 0:
            return np.zeros(0, dtype=bool)
        lo, hi = int(keys.min()), int(keys.max())
        mask = self._held_by_other_partitions(keys, lo, hi)
        for first, last, claimed in self._claimed:
            if first <= hi and last >= lo:
                mask |= _member(claimed, keys)
        return mask

    def claim(self, keys: np.ndarray) -> None:
        """Record keys this run writes, so later days of the run cannot take them again."""
        keys = np.sort(np.asarray(keys, dtype="int64"))
        if keys.size:
            self._claimed.append((int(keys[0]), int(keys[-1]), keys))

    def _held_by_other_partitions(self, keys: np.ndarray, lo: int, hi: int) -> np.ndarray:
        if self._table is None:
            return np.zeros(keys.size, dtype=bool)
        prune = f"{self._outside_sql} AND {self.key} BETWEEN {lo} AND {hi}"
        rows = self._outside & (ds.field(self.key) >= lo) & (ds.field(self.key) <= hi)
        held = delta.read_pruned(self._table, [self.key], prune, rows)
        if held.num_rows == 0:
            return np.zeros(keys.size, dtype=bool)
        found = pc.is_in(pa.array(keys), value_set=pc.unique(held.column(0)))
        return found.to_numpy(zero_copy_only=False)
