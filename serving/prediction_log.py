"""The prediction log: every scored transaction appended to a Delta table in micro-batches.

Rows are buffered in memory and written as one Delta commit by a writer thread when the
buffer reaches ``batch_rows`` or every ``flush_s`` seconds (a scoring request never waits for
a write), and on :meth:`PredictionLog.close` (the service calls it on graceful shutdown).
Drift monitoring reads this table as its production data.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from ml.features import FEATURE_COLUMNS

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("scored_at", _TS),
        ("scored_date", pa.date32()),
        ("transaction_id", pa.string()),
        ("customer_id", pa.int64()),
        ("terminal_id", pa.int64()),
        ("tx_datetime", _TS),
        *[(c, pa.float64()) for c in FEATURE_COLUMNS],
        ("features_as_of", _TS),
        ("degraded", pa.bool_()),
        ("score", pa.float64()),
        ("decision", pa.string()),
        ("model_version", pa.string()),
        ("served_by", pa.string()),
        ("routing", pa.string()),
        ("champion_version", pa.string()),
        ("champion_score", pa.float64()),
        ("challenger_version", pa.string()),
        ("challenger_score", pa.float64()),
        ("latency_ms", pa.float64()),
        ("batch_size", pa.int32()),
    ]
)
PARTITION = "scored_date"


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | dt.date | pd.Timestamp) or value is None


def merge_rows(calls: list[dict[str, object]]) -> dict[str, object]:
    """Several calls' log columns as one set of columns (scalars spread over their rows)."""
    if len(calls) == 1:
        return calls[0]
    sizes = [len(call["transaction_id"]) for call in calls]
    merged: dict[str, object] = {}
    for name in calls[0]:
        parts = [call[name] for call in calls]
        scalar = [_is_scalar(part) for part in parts]
        if all(scalar):
            # One repeat per column, not one array per call: a busy service queues thousands.
            merged[name] = np.repeat(np.array(parts, dtype=object), sizes)
        elif not any(scalar):
            merged[name] = np.concatenate([np.asarray(part) for part in parts])
        else:
            merged[name] = np.concatenate(
                [
                    np.full(n, part, dtype=object) if flag else np.asarray(part)
                    for part, flag, n in zip(parts, scalar, sizes, strict=True)
                ]
            )
    return merged


def _array(value: object, n: int, kind: pa.DataType) -> pa.Array:
    if _is_scalar(value):
        value = [value] * n
    if pa.types.is_floating(kind):
        # NaN (not scored by the challenger) is stored as null.
        value = np.asarray(value, dtype="float64")
        return pa.array(value, type=kind, mask=np.isnan(value))
    return pa.array(value, type=kind, from_pandas=True)


def to_arrow(rows: dict[str, object]) -> pa.Table:
    """Log columns (arrays, or scalars shared by every row) as a :data:`SCHEMA` table."""
    n = len(rows["transaction_id"])
    scored_at = _array(rows["scored_at"], n, _TS)
    arrays = {"scored_at": scored_at, "scored_date": scored_at.cast(pa.date32())}
    for field in SCHEMA:
        if field.name not in arrays:
            arrays[field.name] = _array(rows[field.name], n, field.type)
    return pa.Table.from_arrays([arrays[f.name] for f in SCHEMA], schema=SCHEMA)


class PredictionLog:
    """Buffered, thread-safe appender of prediction rows to a Delta table."""

    def __init__(
        self,
        uri: str,
        batch_rows: int,
        flush_s: float,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.uri = uri
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.storage_options = storage_options or None
        self.rows_written = 0
        self.failed_writes = 0
        self._pending: list[dict[str, object]] = []
        self._table: DeltaTable | None = None
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, rows: dict[str, object]) -> None:
        """Queue one call's rows; a full buffer wakes the writer thread (the caller never waits).

        Rows stay as the caller's columns until the write: one Arrow conversion per micro-batch
        instead of one per request keeps the conversion off the request path.
        """
        with self._lock:
            self._pending.append(rows)
            self._pending_rows += len(rows["transaction_id"])
            full = self._pending_rows >= self.batch_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write everything queued as one Delta commit; returns the rows written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._pending_rows = self._pending, [], 0
            if not batch:
                return 0
            try:
                table = to_arrow(merge_rows(batch))
                self._append(table)
            except Exception:
                # Keep the rows for the next attempt rather than losing them.
                self._table = None
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_rows += sum(len(r["transaction_id"]) for r in batch)
                    self.failed_writes += 1
                log.exception("prediction log write to %s failed; will retry", self.uri)
                raise
            self.rows_written += table.num_rows
            return table.num_rows

    def _append(self, table: pa.Table) -> None:
        """One Delta commit; the open table object spares re-reading the log every time."""
        target = self._table or self.uri
        write_deltalake(
            target,
            table,
            mode="append",
            partition_by=[PARTITION],
            storage_options=None if self._table else self.storage_options,
        )
        if self._table is None:
            self._table = DeltaTable(self.uri, storage_options=self.storage_options)

    @property
    def pending_rows(self) -> int:
        """Rows queued and not yet written."""
        return self._pending_rows

    def _flush_kept(self) -> None:
        """Flush; a failed write is logged by flush and its rows stay queued for the next one."""
        try:
            self.flush()
        except Exception:  # a scoring request must not fail because the log store hiccups
            return

    def _run(self) -> None:
        # Wakes every flush_s seconds, or at once when append() filled a micro-batch.
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if not self._stop.is_set():
                self._flush_kept()

    def close(self) -> int:
        """Stop the timer and write what is left (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(self.flush_s, 1.0) * 2)
        return self.flush()
