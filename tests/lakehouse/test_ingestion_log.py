"""The ingestion log: which days started and never completed, and that it stays small."""

import datetime as dt

from deltalake import DeltaTable

from lakehouse import ingestion_log
from lakehouse.ingestion import Lakehouse
from lakehouse.ingestion_log import COMPLETE, STARTED, incomplete_days, record

DAY, OTHER = dt.date(2018, 4, 3), dt.date(2018, 4, 4)


def test_a_day_is_incomplete_while_its_latest_start_has_no_completion(tmp_settings):
    lakehouse = Lakehouse(tmp_settings)
    assert incomplete_days(lakehouse, "transactions") == []
    record(lakehouse, "transactions", "a", STARTED, [DAY, OTHER])
    record(lakehouse, "transactions", "a", COMPLETE, [DAY, OTHER], {DAY: (10, 1)})
    assert incomplete_days(lakehouse, "transactions") == []

    record(lakehouse, "transactions", "b", STARTED, [DAY])
    record(lakehouse, "transactions", "c", STARTED, [OTHER])
    record(lakehouse, "transactions", "b", COMPLETE, [OTHER])  # b never covered OTHER
    assert incomplete_days(lakehouse, "transactions") == [DAY, OTHER]
    assert incomplete_days(lakehouse, "fraud_reports") == []

    record(lakehouse, "transactions", "b", COMPLETE, [DAY])
    assert incomplete_days(lakehouse, "transactions") == [OTHER]


def test_the_log_is_compacted_as_runs_accumulate(tmp_settings):
    lakehouse = Lakehouse(tmp_settings)
    for i in range(3 * ingestion_log.COMPACT_ABOVE):
        record(lakehouse, "transactions", str(i), STARTED, [DAY])
        record(lakehouse, "transactions", str(i), COMPLETE, [DAY])
    record(lakehouse, "transactions", "last", STARTED, [DAY])

    files = DeltaTable(lakehouse.log_uri).file_uris()
    assert len(files) <= ingestion_log.COMPACT_ABOVE + 1
    assert incomplete_days(lakehouse, "transactions") == [DAY]
