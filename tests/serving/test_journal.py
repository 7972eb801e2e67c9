"""The prediction log's journal, replay and duplicate rule, without a server (a child process
is killed where a kill is the point)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fraudops.settings import REPO_ROOT
from lakehouse.delta import read_table
from serving.dedup import RecentKeys, row_keys
from serving.journal import HEADER, Journal, decode, encode, frame, orphans, read_segment
from serving.prediction_log import PredictionLog
from tests.serving.fixtures import log_rows


def _ids(uri: str) -> list[int]:
    return sorted(read_table(uri).column("transaction_id").to_pylist())


def test_records_come_back_in_order_across_segments(tmp_path):
    # Small segments: the records span several files.
    journal = Journal(tmp_path, segment_bytes=4_096)
    payloads = [os.urandom(size) for size in (10, 3_000, 700, 3_900, 1, 2_500)]
    assert [journal.append(p) for p in payloads] == list(range(1, len(payloads) + 1))
    journal.close(remove=False)  # as if the process had ended: the lock is free
    [orphan] = list(orphans(tmp_path))
    assert [payload for _, payload in orphan.records()] == payloads
    assert [seq for seq, _ in orphan.records()] == list(range(1, len(payloads) + 1))
    assert len(list(orphan.folder.glob("*.seg"))) > 2
    orphan.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_reused_segment_gives_back_only_its_new_records(tmp_path):
    journal = Journal(tmp_path, segment_bytes=4_096)
    record = {seq: bytes([seq]) * 980 for seq in range(1, 18)}  # four per segment
    for seq in range(1, 11):  # segments 1 [1-4], 2 [5-8], 3 [9, 10]
        assert journal.append(record[seq]) == seq
    assert journal.release(8) == 2  # committed: segment 1 is kept for reuse, 2 is deleted
    for seq in range(11, 18):  # 3 [9-12], 4 [13-16], 5 [17] in segment 1's file
        journal.append(record[seq])
    journal.close(remove=False)
    # Behind record 17 the reused file still holds records 2-4: they must not come back.
    [orphan] = list(orphans(tmp_path))
    assert dict(orphan.records()) == {seq: record[seq] for seq in range(9, 18)}
    orphan.remove()


def test_a_torn_record_ends_the_segment(tmp_path):
    path = tmp_path / "00000001.seg"
    whole = frame(1, b"answered") + frame(2, b"also answered")
    torn = frame(3, b"killed while being written")
    path.write_bytes(whole + torn[: HEADER.size + 4] + bytes(100))
    assert [seq for seq, _ in read_segment(path)] == [1, 2]
    flipped = bytearray(whole)
    flipped[-1] ^= 0xFF  # a payload that does not match its checksum
    path.write_bytes(bytes(flipped))
    assert [seq for seq, _ in read_segment(path)] == [1]


def test_a_live_journal_is_not_replayed(tmp_path):
    live = Journal(tmp_path)
    live.append(b"x")
    assert list(orphans(tmp_path)) == []  # its process (this one) still holds the lock
    live.close(remove=True)


def test_records_decode_to_numpy_columns_and_nothing_else():
    rows = log_rows(3, 7)
    decoded = decode(encode(rows))
    assert decoded["transaction_id"].tolist() == [7, 8, 9]
    assert decoded["served_by"].tolist() == ["champion"] * 3

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    with pytest.raises(pickle.UnpicklingError, match="may not refer to"):
        decode(pickle.dumps(Payload()))


CHILD = """
import os, signal, sys
from pathlib import Path
from serving.journal import Journal
from serving.prediction_log import PredictionLog
from tests.serving.fixtures import log_rows

root, uri = Path(sys.argv[1]), sys.argv[2]
log = PredictionLog(uri, 10**9, 3600, journal=Journal(root), recover_from=root)
for i in range(20):
    log.append(log_rows(3, 3 * i))  # on disk when append returns
log.flush()  # committed, while its records stay in the journal's open segment
for i in range(20, 50):
    log.append(log_rows(3, 3 * i))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _run_and_kill(tmp_path) -> tuple[Path, str]:
    root, uri = tmp_path / "journal", str(tmp_path / "prediction_log")
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(root), uri],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    return root, uri


def test_rows_made_durable_before_a_kill_are_replayed_once(tmp_path):
    root, uri = _run_and_kill(tmp_path)
    assert _ids(uri) == list(range(60))  # only the explicit flush reached the table
    # No duplicate window: the journal's app transaction alone keeps the committed rows out.
    log = PredictionLog(uri, 10**9, 3600, recover_from=root)
    assert log.recovered.wait(60)
    assert log.rows_replayed == 90
    assert _ids(uri) == list(range(150))
    assert list(root.iterdir()) == []
    assert log.close() == 0


def test_a_graceful_close_commits_everything_and_deletes_the_journal(tmp_path):
    uri, root = str(tmp_path / "prediction_log"), tmp_path / "journal"
    log = PredictionLog(uri, 10**9, 3600, journal=Journal(root), recover_from=root)
    for i in range(5):
        log.append(log_rows(2, 2 * i))
    assert log.close() == 10
    assert _ids(uri) == list(range(10))
    assert list(root.iterdir()) == []


def test_one_row_per_transaction_and_role_the_first_answer_wins(tmp_path):
    uri = str(tmp_path / "prediction_log")
    log = PredictionLog(uri, 10**9, 3600, dedup_rows=1_000)
    log.append(log_rows(3, 1))  # ids 1, 2, 3
    log.append(log_rows(2, 2, score=np.full(2, 0.75)))  # retries of 2 and 3
    duplicate_in_call = log_rows(2, 4, transaction_id=np.array([4, 4]))
    log.append(duplicate_in_call)
    challenger = log_rows(1, 1, served_by=np.array(["challenger"]))
    log.append(challenger)  # the same transaction answered by the other role: its own row
    assert log.flush() == 5
    assert log.duplicates_dropped == 3
    log.close()
    frame = read_table(uri).to_pandas()
    assert sorted(zip(frame["transaction_id"], frame["served_by"], strict=True)) == [
        (1, "challenger"),
        (1, "champion"),
        (2, "champion"),
        (3, "champion"),
        (4, "champion"),
    ]
    assert (frame["score"] == 0.25).all()  # the first answers, not the retries'

    # A new process (a restart) knows the table's newest rows: a late retry adds nothing.
    restarted = PredictionLog(uri, 10**9, 3600, dedup_rows=1_000)
    restarted.append(log_rows(2, 3))  # ids 3 and 4: retries
    restarted.append(log_rows(1, 5))
    assert restarted.close() == 1
    assert _ids(uri) == [1, 1, 2, 3, 4, 5]


def test_a_failed_write_does_not_make_its_rows_look_like_duplicates(tmp_path):
    blocked = tmp_path / "prediction_log"
    blocked.write_text("not a directory")
    log = PredictionLog(str(blocked), 10**9, 3600, dedup_rows=1_000)
    log.append(log_rows(3, 0))
    with pytest.raises(Exception):  # noqa: B017 (whatever deltalake raises for a file)
        log.flush()
    blocked.unlink()
    assert log.close() == 3


def test_the_window_forgets_the_oldest_keys():
    window = RecentKeys(capacity=3)
    window.add(row_keys(np.array([1, 2, 3, 4]), np.array(["champion"] * 4)))
    assert len(window) == 3
    keys = row_keys(np.array([1, 4, 4]), np.array(["champion"] * 3))
    assert window.first_seen(keys).tolist() == [True, False, False]
