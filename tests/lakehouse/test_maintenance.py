"""Compaction and vacuum: fewer files, the same rows, and time travel kept within the window."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from fraudops.catalog import ALL_TABLES, PREDICTION_LOG, RAW_TRANSACTIONS, TRAINING_SET
from fraudops.settings import get_settings
from lakehouse.maintenance import compact_and_vacuum, data_files

DAYS = [dt.date(2018, 4, 1), dt.date(2018, 4, 2)]


def _small_commits(uri: str, commits: int = 12) -> None:
    """One tiny append per commit, like the prediction log's flushes, over two partitions."""
    for i in range(commits):
        rows = pa.table(
            {"tx_date": [DAYS[i % 2]] * 3, "transaction_id": [3 * i, 3 * i + 1, 3 * i + 2]}
        )
        write_deltalake(uri, rows, mode="append", partition_by=["tx_date"])


def _rows(table: DeltaTable) -> list[tuple]:
    data = table.to_pyarrow_table().sort_by("transaction_id")
    return list(zip(*(data.column(c).to_pylist() for c in data.column_names), strict=True))


@pytest.fixture
def small_files(tmp_settings) -> str:
    uri = RAW_TRANSACTIONS.uri(tmp_settings)
    _small_commits(uri)
    return uri


def test_compaction_leaves_fewer_files_and_the_same_rows(tmp_settings, small_files):
    rows = _rows(DeltaTable(small_files))
    report = compact_and_vacuum(tmp_settings, [RAW_TRANSACTIONS])
    (done,) = report.tables
    assert done.live_files_before == 12
    # One file per partition at delta-rs's default target size.
    assert done.live_files_after == 2
    assert _rows(DeltaTable(small_files)) == rows


def test_vacuum_keeps_the_window_and_time_travel_within_it(tmp_settings, small_files):
    before = DeltaTable(small_files)
    old_version, old_rows = before.version(), _rows(before)
    report = compact_and_vacuum(tmp_settings, [RAW_TRANSACTIONS], retention_hours=168)
    (done,) = report.tables
    # The replaced files are needed by versions inside the window: nothing is deleted yet.
    assert (done.files_vacuumed, done.bytes_removed) == (0, 0)
    assert done.files_after == len(data_files(small_files)) == 12 + 2
    assert _rows(DeltaTable(small_files, version=old_version)) == old_rows


def test_vacuum_after_the_retention_removes_only_unreferenced_files(tmp_settings, small_files):
    old_version = DeltaTable(small_files).version()
    rows = _rows(DeltaTable(small_files))
    # A data file no commit references, e.g. left by a writer whose commit failed.
    orphan = small_files + "/tx_date=2018-04-01/part-orphan.parquet"
    with open(orphan, "wb") as out:
        out.write(b"not referenced")
    report = compact_and_vacuum(
        tmp_settings, [RAW_TRANSACTIONS], retention_hours=0, enforce_retention_duration=False
    )
    (done,) = report.tables
    assert (done.files_before, done.files_vacuumed, done.files_after) == (13, 13, 2)
    assert done.bytes_removed > len(b"not referenced")
    current = DeltaTable(small_files)
    live = pa.table(current.get_add_actions(flatten=True)).column("path").to_pylist()
    assert sorted(data_files(small_files)) == sorted(live)
    assert _rows(current) == rows
    # Outside the window: the version before compaction has lost its files.
    with pytest.raises(OSError):
        DeltaTable(small_files, version=old_version).to_pyarrow_table()


def test_a_retention_below_the_tables_own_is_refused_unless_not_enforced(tmp_settings, small_files):
    with pytest.raises(DeltaError, match="retention"):
        compact_and_vacuum(tmp_settings, [RAW_TRANSACTIONS], retention_hours=0)
    assert len(data_files(small_files)) == 12 + 2


def test_every_existing_table_is_maintained_and_the_rest_listed_missing(tmp_settings, tmp_path):
    moved = get_settings(home=tmp_settings.home, prediction_log_table=str(tmp_path / "log"))
    _small_commits(PREDICTION_LOG.uri(moved), commits=4)
    _small_commits(TRAINING_SET.uri(moved), commits=3)
    report = compact_and_vacuum(moved)
    assert [t.table for t in report.tables] == ["features/training_set", "serving/prediction_log"]
    assert {t.table: t.live_files_after for t in report.tables} == {
        "features/training_set": 2,
        "serving/prediction_log": 2,
    }
    assert len(report.missing) == len(ALL_TABLES) - 2
    assert report.retention_hours == moved.vacuum_retention_hours == 168
