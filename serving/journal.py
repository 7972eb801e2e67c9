"""The prediction log's journal: rows made durable on local disk before their answers go out.

One journal per service process: a folder of numbered segment files under the state folder,
locked (``flock``) for as long as the process lives, so a journal whose lock is free belongs to
a process that has ended, however it ended. A record is one scoring call's log columns,
framed with its sequence number, its length and a CRC32: a record torn by a kill is recognised
and dropped when the journal is read back (its call was never answered).

Segments are zero-filled when created and then overwritten in place: ``fdatasync`` of data
written into allocated blocks has no file-system metadata to commit (measured on the same disk:
0.15 ms, against 0.3-3 ms when appending). A sync thread writes everything queued since its
last pass with one write and one ``fdatasync`` (group commit) and then resolves the callers'
futures; a second thread zero-fills the next segment ahead of need.

Records are pickled, the cheapest encoding of a call's numpy columns (about 0.2 ms per
micro-batch against 0.9 ms for Arrow IPC, on the event-loop thread), and read back by an
unpickler that only rebuilds numpy arrays, datetimes and builtins.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import io
import logging
import os
import pickle
import shutil
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"FJR1"
# magic, sequence number, payload length, CRC32 of (sequence, length, payload)
HEADER = struct.Struct("<4sQII")
SEGMENT_BYTES = 16 * 2**20
SUFFIX = ".seg"
LOCK_NAME = "lock"
_ZEROS = bytes(2**20)

# What a pickled call's columns may refer to: numpy arrays and scalars, datetimes.
_ALLOWED = {
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "timezone"),
    ("datetime", "timedelta"),
    *(
        (module, name)
        for module in (
            "numpy",
            "numpy.core.multiarray",
            "numpy._core.multiarray",
            "numpy.core.numeric",
            "numpy._core.numeric",
        )
        for name in ("_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar")
    ),
}


class JournalError(RuntimeError):
    """The journal could not make rows durable (the calls are not answered)."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a journal record may not refer to {module}.{name}")


def encode(rows: dict[str, object]) -> bytes:
    """One call's log columns as a record payload."""
    return pickle.dumps(rows, protocol=5)


def decode(payload: bytes) -> dict[str, object]:
    """A record payload back into log columns (only numpy arrays, datetimes and builtins)."""
    return _Unpickler(io.BytesIO(payload)).load()


def _checksum(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QI", seq, len(payload))))


def frame(seq: int, payload: bytes) -> bytes:
    """A record as written: header, then payload."""
    return HEADER.pack(MAGIC, seq, len(payload), _checksum(seq, payload)) + payload


def read_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """The intact records of a segment, in order, up to its zero-filled rest or a torn record."""
    data = path.read_bytes()
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, seq, length, checksum = HEADER.unpack_from(data, offset)
        payload = data[offset + HEADER.size : offset + HEADER.size + length]
        if magic != MAGIC or len(payload) != length or _checksum(seq, payload) != checksum:
            return
        yield seq, payload
        offset += HEADER.size + length


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}"))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(folder: Path, block: bool) -> int | None:
    """An exclusive lock on the journal ``folder``: its fd, or None when someone holds it."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # removed by the process that replayed it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove(folder: Path, lock_fd: int) -> None:
    """Delete a journal folder, then release its lock (nobody can take it in between)."""
    for path in _segments(folder):
        path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.close(lock_fd)


@dataclass
class _Segment:
    index: int
    path: Path
    fd: int
    size: int
    offset: int = 0
    last_seq: int = 0


def _create_segment(folder: Path, index: int, size: int) -> _Segment:
    """A zero-filled segment, durable with its directory entry before anything is written."""
    path = folder / f"{index:08d}{SUFFIX}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < size:
            written += os.write(fd, _ZEROS[: min(len(_ZEROS), size - written)])
        os.fsync(fd)
        _fsync_dir(folder)
    except BaseException:
        os.close(fd)
        raise
    return _Segment(index, path, fd, size)


class Journal:
    """This process's journal: ``append`` returns a future resolved once the record is durable."""

    def __init__(self, root: Path, fsync: bool = True, segment_bytes: int = SEGMENT_BYTES):
        self.root = root
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.folder = root / self.id
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.last_seq = 0
        self.folder.mkdir(parents=True)
        self._lock_fd = _lock(self.folder, block=True)
        _fsync_dir(root)
        self._current = _create_segment(self.folder, 1, segment_bytes)
        self._full: list[_Segment] = []
        self._queue: list[tuple[int, bytes]] = []
        self._group: cf.Future[None] = cf.Future()
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._spares = cf.ThreadPoolExecutor(1, thread_name_prefix="journal-spare")
        self._spare = self._spares.submit(_create_segment, self.folder, 2, segment_bytes)
        self._thread = threading.Thread(target=self._run, name="journal-sync", daemon=True)
        self._thread.start()

    @property
    def error(self) -> str | None:
        """Why the journal stopped accepting records, or None while it works."""
        return None if self._error is None else str(self._error)

    def append(self, payload: bytes) -> cf.Future[None]:
        """Queue one record; the future resolves once it is written (and fsynced)."""
        with self._cond:
            if self._error is not None or self._closed:
                raise JournalError(f"the journal {self.folder} is unusable: {self._error}")
            self.last_seq += 1
            self._queue.append((self.last_seq, frame(self.last_seq, payload)))
            group = self._group
            self._cond.notify()
        return group

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                records, self._queue = self._queue, []
                group, self._group = self._group, cf.Future()
                failed = self._error
            if failed is None:
                try:
                    self._write(records)
                except Exception as exc:  # a full or failing disk: nothing more is answered
                    log.exception("prediction-log journal write failed in %s", self.folder)
                    with self._cond:
                        self._error = failed = exc
            if failed is None:
                group.set_result(None)
            else:
                group.set_exception(JournalError(f"journal write failed: {failed}"))

    def _write(self, records: list[tuple[int, bytes]]) -> None:
        segment, chunk, end = self._current, [], self._current.offset
        for seq, record in records:
            if end + len(record) > segment.size:
                self._put(segment, chunk)
                segment = self._rotate(len(record))
                chunk, end = [], segment.offset
            chunk.append((seq, record))
            end += len(record)
        self._put(segment, chunk)

    def _put(self, segment: _Segment, chunk: list[tuple[int, bytes]]) -> None:
        if not chunk:
            return
        data = b"".join(record for _, record in chunk)
        written = os.pwrite(segment.fd, data, segment.offset)
        if written != len(data):
            raise OSError(f"short write to {segment.path}: {written} of {len(data)} bytes")
        segment.offset += written
        segment.last_seq = chunk[-1][0]
        if self.fsync:
            os.fdatasync(segment.fd)

    def _rotate(self, need: int) -> _Segment:
        """Close the full segment and continue in the prepared spare (made now if unusable)."""
        full = self._current
        os.close(full.fd)
        with self._cond:
            self._full.append(full)
        index = full.index + 1
        try:
            spare = self._spare.result()
        except Exception:
            log.exception("preparing a journal segment failed; creating it now")
            spare = None
        if spare is not None and spare.size < need:
            os.close(spare.fd)
            spare.path.unlink()
            spare = None
        if spare is None:
            spare = _create_segment(self.folder, index, max(self.segment_bytes, need))
        self._current = spare
        self._spare = self._spares.submit(
            _create_segment, self.folder, index + 1, self.segment_bytes
        )
        return spare

    def release(self, upto: int) -> int:
        """Delete the full segments whose records are all at or below ``upto`` (committed)."""
        with self._cond:
            done = [s for s in self._full if s.last_seq <= upto]
            self._full = [s for s in self._full if s.last_seq > upto]
        for segment in done:
            segment.path.unlink(missing_ok=True)
        return len(done)

    def close(self, remove: bool) -> None:
        """Stop the sync thread; ``remove`` deletes the journal (every record is committed)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._spares.shutdown(wait=True)
        for future in (self._spare,):
            if future.exception() is None:
                os.close(future.result().fd)
        os.close(self._current.fd)
        if remove:
            _remove(self.folder, self._lock_fd)
        else:
            os.close(self._lock_fd)


class Orphan:
    """The journal of a process that has ended, locked by this one while it is replayed."""

    def __init__(self, folder: Path, lock_fd: int) -> None:
        self.folder = folder
        self.id = folder.name
        self._lock_fd = lock_fd

    def records(self) -> Iterator[tuple[int, bytes]]:
        """Every intact record, oldest first."""
        for path in _segments(self.folder):
            yield from read_segment(path)

    def remove(self) -> None:
        """Delete the journal (its records are in the Delta table) and release the lock."""
        _remove(self.folder, self._lock_fd)

    def release(self) -> None:
        """Keep the journal for a later attempt; release the lock."""
        os.close(self._lock_fd)


def orphans(root: Path, own: str | None = None) -> Iterator[Orphan]:
    """The journals under ``root`` whose process has ended, each locked as it is yielded."""
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.name == own or not folder.is_dir():
            continue
        lock_fd = _lock(folder, block=False)
        if lock_fd is not None:
            yield Orphan(folder, lock_fd)
