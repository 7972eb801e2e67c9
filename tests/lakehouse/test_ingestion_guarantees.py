"""What ingestion guarantees when extracts, processes or writers misbehave (docs/operations.md)."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path

import deltalake
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import delta
from lakehouse.errors import ConcurrentIngestionError, IngestionFailedError, VolumeDropError
from lakehouse.ingestion import Lakehouse, ingest_feed
from lakehouse.ingestion_log import incomplete_days
from lakehouse.simulator import Simulator, SimulatorConfig
from lakehouse.source import extract_path, land_range

START = dt.date(2018, 4, 1)
TX = "transactions"


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def _land(lh: Lakehouse, first: dt.date, last: dt.date) -> None:
    settings = lh.settings
    land_range(
        Simulator(SimulatorConfig.from_settings(settings)), settings.landing_path, first, last
    )


def _path(lh: Lakehouse, d: dt.date, feed: str = TX) -> Path:
    return extract_path(lh.settings.landing_path, feed, d)


def _raw(lh: Lakehouse, feed: str = TX) -> pd.DataFrame:
    return delta.read_table(lh.raw_uri(feed)).to_pandas()


def _quarantine(lh: Lakehouse, feed: str = TX) -> pd.DataFrame:
    return delta.read_table(lh.quarantine_uri(feed)).to_pandas()


def _rows_per_day(lh: Lakehouse, feed: str = TX) -> dict[dt.date, int]:
    column = {"transactions": "tx_date", "fraud_reports": "report_date"}[feed]
    return _raw(lh, feed)[column].value_counts().to_dict()


def _append_rows(path: Path, rows: pd.DataFrame) -> None:
    table = pq.read_table(path)
    both = pd.concat([table.to_pandas(), rows], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(both, schema=table.schema, preserve_index=False), path)


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---- volume guard -----------------------------------------------------------------------------


def test_an_empty_extract_is_refused_and_the_day_keeps_its_rows(lakehouse):
    ingest_feed(lakehouse, TX, [day(i) for i in range(9)])
    before = _rows_per_day(lakehouse)
    raw_version = delta.version(lakehouse.raw_uri(TX))
    quarantine_version = delta.version(lakehouse.quarantine_uri(TX))
    path = _path(lakehouse, day(8))
    pq.write_table(pq.read_table(path).schema.empty_table(), path)

    with pytest.raises(VolumeDropError) as refused:
        ingest_feed(lakehouse, TX, [day(8)])

    median = statistics.median(before[day(i)] for i in range(1, 8))
    message = str(refused.value)
    assert day(8).isoformat() in message
    assert "0 valid rows" in message and f"{before[day(8)]:,} rows" in message
    assert f"{median:,.0f} rows" in message and "FRAUDOPS_VOLUME_MIN_SHARE" in message
    assert _rows_per_day(lakehouse) == before
    assert delta.version(lakehouse.raw_uri(TX)) == raw_version
    assert delta.version(lakehouse.quarantine_uri(TX)) == quarantine_version


def test_a_day_far_below_its_trailing_median_lands_only_when_forced(lakehouse):
    ingest_feed(lakehouse, TX, [day(i) for i in range(8)])
    _land(lakehouse, day(8), day(8))
    path = _path(lakehouse, day(8))
    small = pq.read_table(path).slice(0, 5)
    pq.write_table(small, path)

    with pytest.raises(VolumeDropError, match=day(8).isoformat()):
        ingest_feed(lakehouse, TX, [day(8)])
    assert day(8) not in _rows_per_day(lakehouse)

    report = ingest_feed(lakehouse, TX, [day(8)], force=True)
    assert _rows_per_day(lakehouse)[day(8)] == small.num_rows
    assert [drop.day for drop in report.forced] == [day(8)]


def test_the_min_share_setting_decides_what_is_too_small(lakehouse):
    ingest_feed(lakehouse, TX, [day(i) for i in range(8)])
    _land(lakehouse, day(8), day(8))
    path = _path(lakehouse, day(8))
    full = pq.read_table(path)
    pq.write_table(full.slice(0, full.num_rows // 3), path)
    lenient = Lakehouse(lakehouse.settings.model_copy(update={"volume_min_share": 0.2}))

    ingest_feed(lenient, TX, [day(8)])

    assert _rows_per_day(lakehouse)[day(8)] == full.num_rows // 3


def test_a_day_that_had_rows_cannot_drop_to_zero_even_without_history(lakehouse):
    ingest_feed(lakehouse, TX, [day(3)])
    path = _path(lakehouse, day(3))
    pq.write_table(pq.read_table(path).schema.empty_table(), path)

    with pytest.raises(VolumeDropError, match="would drop to zero rows"):
        ingest_feed(lakehouse, TX, [day(3)])
    assert _rows_per_day(lakehouse)[day(3)] > 0


def test_inside_one_backfill_the_guard_refuses_the_empty_day_and_the_others_land(lakehouse):
    days = [day(i) for i in range(10)]
    _land(lakehouse, days[0], days[-1])
    landed = {d: pq.read_table(_path(lakehouse, d)).num_rows for d in days}
    path = _path(lakehouse, day(8))
    pq.write_table(pq.read_table(path).schema.empty_table(), path)

    with pytest.raises(VolumeDropError) as refused:
        ingest_feed(lakehouse, TX, days)

    assert refused.value.days == [day(8)]
    assert _rows_per_day(lakehouse) == {d: n for d, n in landed.items() if d != day(8)}


# ---- one row per transaction id ---------------------------------------------------------------


def _copies_for_next_day(path: Path, n: int, column: str) -> pd.DataFrame:
    rows = pq.read_table(path).to_pandas().head(n).copy()
    rows[column] = rows[column] + pd.Timedelta(days=1)
    return rows


def test_an_id_already_in_another_days_partition_is_quarantined(lakehouse):
    ingest_feed(lakehouse, TX, [day(0)])
    _land(lakehouse, day(1), day(1))
    good = pq.read_table(_path(lakehouse, day(1))).num_rows
    copies = _copies_for_next_day(_path(lakehouse, day(0)), 5, "tx_datetime")
    _append_rows(_path(lakehouse, day(1)), copies)

    report = ingest_feed(lakehouse, TX, [day(1)])

    raw = _raw(lakehouse)
    quarantine = _quarantine(lakehouse)
    assert raw["transaction_id"].is_unique
    assert _rows_per_day(lakehouse)[day(1)] == good
    assert report.reasons == {"duplicate_transaction_id": 5}
    assert set(quarantine["record_key"]) == {str(i) for i in copies["transaction_id"]}
    assert (quarantine["partition_date"] == day(1)).all()


def test_re_ingesting_a_day_is_not_a_duplicate_of_itself(lakehouse):
    ingest_feed(lakehouse, TX, [day(0), day(1)])
    before = _rows_per_day(lakehouse)

    report = ingest_feed(lakehouse, TX, [day(1)])

    assert report.quarantined == 0
    assert _rows_per_day(lakehouse) == before


def test_within_one_run_the_earlier_day_keeps_a_shared_id(lakehouse):
    _land(lakehouse, day(0), day(1))
    copies = _copies_for_next_day(_path(lakehouse, day(0)), 5, "tx_datetime")
    _append_rows(_path(lakehouse, day(1)), copies)

    report = ingest_feed(lakehouse, TX, [day(0), day(1)])

    raw = _raw(lakehouse).set_index("transaction_id")
    assert raw.index.is_unique
    assert (raw.loc[copies["transaction_id"], "tx_date"] == day(0)).all()
    assert report.reasons == {"duplicate_transaction_id": 5}


def test_a_transaction_is_reported_as_fraud_once(lakehouse):
    feed = "fraud_reports"
    first, second = day(10), day(11)
    ingest_feed(lakehouse, feed, [first])
    _land(lakehouse, second, second)
    copies = _copies_for_next_day(_path(lakehouse, first, feed), 3, "reported_at")
    assert len(copies) == 3
    _append_rows(_path(lakehouse, second, feed), copies)

    report = ingest_feed(lakehouse, feed, [second])

    assert _raw(lakehouse, feed)["transaction_id"].is_unique
    assert report.reasons == {"duplicate_transaction_id": 3}


# ---- raw and quarantine complete after a kill -------------------------------------------------


class _Killed(BaseException):
    """Stands for the process being killed: nothing in the ingestion may catch it."""


def _kill_before(monkeypatch, uri: str, nth: int = 1) -> None:
    """Make the ``nth`` Delta write to ``uri`` die before it commits."""
    real = delta.write_deltalake
    seen = {"writes": 0}

    def write(table_or_uri, data, **kwargs):
        target = table_or_uri if isinstance(table_or_uri, str) else table_or_uri.table_uri
        if Path(target.removeprefix("file://")) == Path(uri):
            seen["writes"] += 1
            if seen["writes"] == nth:
                raise _Killed(f"killed before writing {uri}")
        return real(table_or_uri, data, **kwargs)

    monkeypatch.setattr(delta, "write_deltalake", write)


KILL_POINTS = {
    "before quarantine": lambda lh: (lh.quarantine_uri(TX), 1),
    "between quarantine and raw": lambda lh: (lh.raw_uri(TX), 1),
    "before the completion mark": lambda lh: (lh.log_uri, 2),
}


def _killed_run(lakehouse, monkeypatch, point: str) -> set[int]:
    """Ingest day 0, then kill the ingestion of day 1 (20 bad rows) at ``point``."""
    ingest_feed(lakehouse, TX, [day(0)])
    _land(lakehouse, day(1), day(2))
    path = _path(lakehouse, day(1))
    bad = pq.read_table(path).to_pandas().head(20).copy()
    bad["transaction_id"] += 5_000_000
    bad["tx_amount"] = -1.0
    _append_rows(path, bad)
    with monkeypatch.context() as patch:
        _kill_before(patch, *KILL_POINTS[point](lakehouse))
        with pytest.raises(_Killed):
            ingest_feed(lakehouse, TX, [day(1)])
    return set(pq.read_table(path).column("transaction_id").to_pylist())


def _in_raw_or_quarantine(lakehouse: Lakehouse, d: dt.date) -> set[int]:
    raw = _raw(lakehouse)
    quarantine = _quarantine(lakehouse)
    kept = set(raw.loc[raw["tx_date"] == d, "transaction_id"])
    return kept | set(quarantine.loc[quarantine["partition_date"] == d, "record_key"].astype(int))


@pytest.mark.parametrize("point", KILL_POINTS)
def test_the_next_run_completes_a_day_whose_ingestion_was_killed(lakehouse, monkeypatch, point):
    landed = _killed_run(lakehouse, monkeypatch, point)

    ingest_feed(lakehouse, TX, [day(2)])

    assert landed <= _in_raw_or_quarantine(lakehouse, day(1))
    assert _raw(lakehouse)["transaction_id"].is_unique


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_day_is_either_complete_or_visibly_incomplete(lakehouse, monkeypatch, point):
    landed = _killed_run(lakehouse, monkeypatch, point)

    assert incomplete_days(lakehouse, TX) == [day(1)]
    report = ingest_feed(lakehouse, TX, [day(2)])
    assert report.resumed == [day(1)] and report.days == [day(1), day(2)]
    assert incomplete_days(lakehouse, TX) == []
    assert landed <= _in_raw_or_quarantine(lakehouse, day(1))


# ---- validation robustness and per-day isolation ----------------------------------------------


def test_an_id_beyond_int64_is_quarantined_and_the_other_rows_land(lakehouse):
    _land(lakehouse, day(0), day(0))
    path = _path(lakehouse, day(0))
    good = pq.read_table(path)
    frame = good.to_pandas().astype({"transaction_id": str})
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "transaction_id": "9223372036854775808"}
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)

    report = ingest_feed(lakehouse, TX, [day(0)])

    quarantine = _quarantine(lakehouse)
    assert report.rows == good.num_rows
    assert quarantine["record_key"].tolist() == ["9223372036854775808"]
    assert quarantine["reason"].tolist() == ["transaction_id outside the int64 range"]


def test_one_unreadable_extract_fails_its_day_and_the_others_land(lakehouse):
    days = [day(0), day(1), day(2)]
    _land(lakehouse, days[0], days[-1])
    landed = {d: pq.read_table(_path(lakehouse, d)).num_rows for d in days}
    _path(lakehouse, day(1)).write_bytes(b"not a parquet file")

    with pytest.raises(IngestionFailedError) as failed:
        ingest_feed(lakehouse, TX, days)

    message = str(failed.value)
    assert failed.value.days == [day(1)]
    assert day(1).isoformat() in message and str(_path(lakehouse, day(1))) in message
    assert "ArrowInvalid" in message
    assert _rows_per_day(lakehouse) == {day(0): landed[day(0)], day(2): landed[day(2)]}


def test_a_missing_extract_in_landing_mode_fails_only_its_day(lakehouse):
    _land(lakehouse, day(0), day(2))
    _path(lakehouse, day(1)).unlink()
    landing = Lakehouse(lakehouse.settings.model_copy(update={"source": "landing"}))

    with pytest.raises(IngestionFailedError, match="has not landed") as failed:
        ingest_feed(landing, TX, [day(0), day(1), day(2)])

    assert failed.value.days == [day(1)]
    assert set(_rows_per_day(lakehouse)) == {day(0), day(2)}


def test_every_quarantined_raw_record_is_strict_json(lakehouse):
    _land(lakehouse, day(0), day(0))
    path = _path(lakehouse, day(0))
    bad = pq.read_table(path).to_pandas().head(4).copy()
    bad["transaction_id"] += 5_000_000
    bad["tx_amount"] = [float("nan"), float("inf"), float("-inf"), 5.0]
    table = pq.read_table(path)
    rows = pa.Table.from_pandas(bad, schema=table.schema, preserve_index=False)
    nulled = rows.set_column(2, "customer_id", pa.array([1, 1, 1, None], pa.int64()))
    pq.write_table(pa.concat_tables([table, nulled]), path)

    ingest_feed(lakehouse, TX, [day(0)])

    records = {
        int(k): _strict_json(r)
        for k, r in _quarantine(lakehouse)[["record_key", "raw_record"]].values
    }
    keys = bad["transaction_id"].tolist()
    assert [records[k]["tx_amount"] for k in keys] == [None, "Infinity", "-Infinity", 5.0]
    assert records[keys[3]]["customer_id"] is None
    assert records[keys[3]]["transaction_id"] == keys[3]


# ---- concurrent writers -----------------------------------------------------------------------


def _lose_to_a_concurrent_writer(monkeypatch, uri: str, times: int) -> None:
    """Before each of the next ``times`` writes to ``uri``, another writer commits to the same
    partitions, so the write (based on the snapshot before) loses its commit."""
    real = delta.write_deltalake
    left = {"n": times}

    def write(table_or_uri, data, **kwargs):
        target = table_or_uri if isinstance(table_or_uri, str) else table_or_uri.table_uri
        if left["n"] and Path(target.removeprefix("file://")) == Path(uri):
            left["n"] -= 1
            snapshot = deltalake.DeltaTable(uri)
            real(uri, data.slice(0, 1), **kwargs)
            return real(snapshot, data, **kwargs)
        return real(table_or_uri, data, **kwargs)

    monkeypatch.setattr(delta, "write_deltalake", write)


def test_a_commit_lost_to_a_concurrent_writer_is_retried(lakehouse, monkeypatch):
    ingest_feed(lakehouse, TX, [day(0)])
    landed = pq.read_table(_path(lakehouse, day(0))).num_rows
    _lose_to_a_concurrent_writer(monkeypatch, lakehouse.raw_uri(TX), times=1)

    report = ingest_feed(lakehouse, TX, [day(0)])

    assert report.attempts == 2
    assert _rows_per_day(lakehouse) == {day(0): landed}
    assert incomplete_days(lakehouse, TX) == []


def test_an_ingestion_that_keeps_losing_names_the_partition_and_stays_incomplete(
    lakehouse, monkeypatch
):
    ingest_feed(lakehouse, TX, [day(0)])
    _lose_to_a_concurrent_writer(monkeypatch, lakehouse.raw_uri(TX), times=99)

    with pytest.raises(ConcurrentIngestionError) as lost:
        ingest_feed(lakehouse, TX, [day(0)])

    assert lakehouse.raw_uri(TX) in str(lost.value) and day(0).isoformat() in str(lost.value)
    assert incomplete_days(lakehouse, TX) == [day(0)]
