"""The duplicate window survives compaction: it is seeded by ``scored_at``, not by file age.

Compaction rewrites old rows into a new file, which then has the newest modification time of
the table; a window seeded from the newest files would hold those old rows and miss the ids
logged just before a restart.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from lakehouse.delta import read_table
from lakehouse.maintenance import maintain_table
from serving.dedup import newest_keys, row_keys
from serving.prediction_log import PredictionLog
from tests.serving.fixtures import log_rows

OLD = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
RECENT = dt.datetime(2026, 1, 2, 8, tzinfo=dt.UTC)


def _compacted_log(uri: str) -> None:
    """Five flushes of old rows (ids 0-49), then one of recent rows (ids 1000-1004), then a
    compaction that rewrites the old ones into a single new file."""
    log = PredictionLog(uri, 10**9, 3600)
    for flush in range(5):
        log.append(log_rows(10, 10 * flush, scored_at=OLD + dt.timedelta(minutes=flush)))
        log.flush()
    log.append(log_rows(5, 1_000, scored_at=RECENT))
    log.close()
    before = DeltaTable(uri).version()
    report = maintain_table(uri, "serving/prediction_log", 0, enforce_retention_duration=False)
    assert report.files_compacted == 5 and report.version > before


def test_newest_keys_follow_scored_at_after_compaction(tmp_path):
    uri = str(tmp_path / "prediction_log")
    _compacted_log(uri)
    table = DeltaTable(uri)
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    newest_file = actions["path"][int(np.argmax(actions["modification_time"]))]
    assert newest_file.startswith("scored_date=2026-01-01")  # the old rows' rewritten file
    champion = np.array(["champion"] * 5)
    recent = row_keys(np.arange(1_000, 1_005), champion)
    assert sorted(newest_keys(table, 5)) == sorted(recent)
    # More than the recent rows: the newest old ones follow, oldest first.
    keys = newest_keys(table, 8)
    assert keys[-5:] == recent and keys[:3] == row_keys(np.array([47, 48, 49]), champion[:3])


def test_a_recent_id_is_still_rejected_after_compaction_and_restart(tmp_path):
    uri = str(tmp_path / "prediction_log")
    _compacted_log(uri)
    # A restarted writer whose window holds as many keys as the old rows' file has rows.
    restarted = PredictionLog(uri, 10**9, 3600, dedup_rows=10)
    restarted.append(log_rows(2, 1_003, scored_at=RECENT + dt.timedelta(minutes=1)))  # retries
    restarted.append(log_rows(1, 2_000, scored_at=RECENT + dt.timedelta(minutes=1)))
    assert restarted.close() == 1
    assert restarted.duplicates_dropped == 2
    ids = read_table(uri).to_pandas()["transaction_id"]
    assert ids.is_unique and 2_000 in set(ids)
