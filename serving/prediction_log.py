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
from deltalake import write_deltalake

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


def to_arrow(rows: dict[str, object]) -> pa.Table:
    """One call's log columns (arrays, or scalars shared by every row) as a :data:`SCHEMA` table."""
    n = len(rows["transaction_id"])
    scored_at = pd.Timestamp(rows["scored_at"])
    columns = {**rows, "scored_date": scored_at.date()}
    arrays = []
    for field in SCHEMA:
        value = columns[field.name]
        if isinstance(value, str | int | float | dt.date | pd.Timestamp) or value is None:
            value = [value] * n
        if pa.types.is_floating(field.type):
            # NaN (not scored by the challenger) is stored as null.
            value = np.asarray(value, dtype="float64")
            arrays.append(pa.array(value, type=field.type, mask=np.isnan(value)))
        else:
            arrays.append(pa.array(value, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


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
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, rows: dict[str, object]) -> None:
        """Queue one call's rows; a full buffer wakes the writer thread (the caller never waits)."""
        table = to_arrow(rows)
        with self._lock:
            self._pending.append(table)
            self._pending_rows += table.num_rows
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
            table = pa.concat_tables(batch)
            try:
                write_deltalake(
                    self.uri,
                    table,
                    mode="append",
                    partition_by=[PARTITION],
                    storage_options=self.storage_options,
                )
            except Exception:
                # Keep the rows for the next attempt rather than losing them.
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_rows += table.num_rows
                    self.failed_writes += 1
                log.exception("prediction log write to %s failed; will retry", self.uri)
                raise
            self.rows_written += table.num_rows
            return table.num_rows

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
