"""The prediction log: every scored transaction appended to a Delta table in micro-batches.

Rows are buffered in memory and written as one Delta commit by a writer thread when the
buffer reaches ``batch_rows`` or every ``flush_s`` seconds (a scoring request never waits for
a Delta write), and on :meth:`PredictionLog.close` (the service calls it on graceful shutdown).

With a journal (serving/journal.py), ``append`` also writes each call's rows there, fsynced,
before it returns: the service answers only then. Each Delta commit records the journal's last
sequence number as a Delta app transaction, then the journal segments it covers are deleted.
At start-up the writer first replays the journals of ended processes (the records above the
version their app transaction reached), so a kill loses no answered row and a row committed
just before the kill is not written twice. Every write goes through the duplicate rule of
serving/dedup.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from fraudops.contracts import FEATURE_COLUMNS
from serving.dedup import RecentKeys, filter_new, newest_keys
from serving.journal import Journal, Orphan, decode, encode, orphans

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("scored_at", _TS),
        ("scored_date", pa.date32()),
        ("transaction_id", pa.int64()),
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


def app_id(journal_id: str) -> str:
    """The Delta app-transaction id under which a journal's commits are recorded."""
    return f"fraudops.serving.journal.{journal_id}"


class PredictionLog:
    """Buffered, thread-safe appender of prediction rows to a Delta table."""

    def __init__(
        self,
        uri: str,
        batch_rows: int,
        flush_s: float,
        storage_options: dict[str, str] | None = None,
        journal: Journal | None = None,
        recover_from: Path | None = None,
        dedup_rows: int = 0,
    ) -> None:
        self.uri = uri
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.storage_options = storage_options or None
        self.journal = journal
        self.recover_from = recover_from
        self.window = RecentKeys(dedup_rows) if dedup_rows > 0 else None
        self.rows_written = 0
        self.rows_replayed = 0
        self.duplicates_dropped = 0
        self.failed_writes = 0
        self.recovered = threading.Event()
        self._seeded = self.window is None
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
        """Queue one call's rows; a full buffer wakes the writer thread (the caller never waits
        for a Delta write).

        Rows stay as the caller's columns until the write: one Arrow conversion per micro-batch
        instead of one per request keeps the conversion off the request path. With a journal
        the rows are on disk when this returns; :class:`~serving.journal.JournalError` when
        they cannot be (the call must not be answered).
        """
        payload = encode(rows) if self.journal is not None else None
        with self._lock:
            # Under the buffer's lock: a flush takes exactly the rows of the records up to the
            # journal's last sequence number.
            if self.journal is not None:
                self.journal.append(payload)
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
                upto = self.journal.last_seq if self.journal is not None else 0
            if not batch:
                return 0
            try:
                self._seed()
                table = to_arrow(merge_rows(batch))
                new, keys = filter_new(table, self.window)
                journal_txn = None
                if self.journal is not None:
                    journal_txn = Transaction(app_id(self.journal.id), upto)
                self._commit(new, journal_txn)
            except Exception:
                # Keep the rows for the next attempt rather than losing them.
                self._table = None
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_rows += sum(len(r["transaction_id"]) for r in batch)
                    self.failed_writes += 1
                log.exception("prediction log write to %s failed; will retry", self.uri)
                raise
            self._committed(table.num_rows - new.num_rows, keys)
            self.rows_written += new.num_rows
            if self.journal is not None:
                self.journal.release(upto)
            return new.num_rows

    def _committed(self, duplicates: int, keys: list[int]) -> None:
        """Remember the keys of committed rows (never before: see serving/dedup.py)."""
        if self.window is not None:
            self.window.add(keys)
        self.duplicates_dropped += duplicates

    def _open(self) -> DeltaTable | None:
        if self._table is None and DeltaTable.is_deltatable(self.uri, self.storage_options):
            self._table = DeltaTable(self.uri, storage_options=self.storage_options)
        return self._table

    def _commit(self, table: pa.Table, journal_txn: Transaction | None) -> None:
        """One Delta commit; the open table object spares re-reading the log every time.

        A commit of no rows still records the journal's app transaction, so the segments it
        covers are known to be done.
        """
        if table.num_rows == 0 and journal_txn is None:
            return
        target = self._table or self.uri
        write_deltalake(
            target,
            table,
            mode="append",
            partition_by=[PARTITION],
            storage_options=None if self._table else self.storage_options,
            commit_properties=(
                CommitProperties(app_transactions=[journal_txn]) if journal_txn else None
            ),
        )
        if self._table is None:
            self._table = DeltaTable(self.uri, storage_options=self.storage_options)

    def _seed(self) -> None:
        """Fill the duplicate window from the table's newest rows (once, before any write)."""
        if self._seeded:
            return
        table = self._open()
        if table is not None:
            self.window.add(newest_keys(table, self.window.capacity))
        self._seeded = True

    def recover(self) -> bool:
        """Replay the journals of ended processes; True when none is left behind."""
        with self._write_lock:
            try:
                self._seed()
            except Exception:
                log.exception("reading the newest prediction-log keys failed; will retry")
                return False
            clean = True
            if self.recover_from is not None:
                own = self.journal.id if self.journal is not None else None
                for orphan in orphans(self.recover_from, own):
                    try:
                        self._replay(orphan)
                    except Exception:
                        orphan.release()
                        self._table = None
                        clean = False
                        log.exception("replaying journal %s failed; will retry", orphan.folder)
            if clean:
                self.recovered.set()
            return clean

    def _replay(self, orphan: Orphan) -> None:
        """Commit the records of ``orphan`` not yet in the table, then delete it."""
        table = self._open()
        done = table.transaction_version(app_id(orphan.id)) if table is not None else None
        calls, last = [], 0
        for seq, payload in orphan.records():
            if done is not None and seq <= done:
                continue
            try:
                calls.append(decode(payload))
            except Exception:  # intact but unreadable (written by incompatible code): say so
                log.exception("journal %s: record %d cannot be read, skipped", orphan.id, seq)
                continue
            last = seq
        if calls:
            rows = to_arrow(merge_rows(calls))
            new, keys = filter_new(rows, self.window)
            self._commit(new, Transaction(app_id(orphan.id), last))
            self._committed(rows.num_rows - new.num_rows, keys)
            self.rows_replayed += new.num_rows
            log.info(
                "replayed %d prediction-log rows from journal %s (%d duplicates dropped)",
                new.num_rows,
                orphan.id,
                rows.num_rows - new.num_rows,
            )
        orphan.remove()

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
        # Replays first, then wakes every flush_s seconds, or at once when append() filled a
        # micro-batch; a replay that failed is tried again at each wake-up.
        self.recover()
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if not self._stop.is_set():
                if not self.recovered.is_set():
                    self.recover()
                self._flush_kept()

    def close(self) -> int:
        """Stop the timer and write what is left (graceful shutdown).

        The journal is deleted when everything it holds is committed, and kept for the next
        start otherwise.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(self.flush_s, 1.0) * 2)
        try:
            return self.flush()
        finally:
            if self.journal is not None:
                self.journal.close(remove=self.pending_rows == 0)
