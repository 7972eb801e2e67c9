"""The volume guard's arithmetic and the day-over-day report an asset check can use."""

import datetime as dt
import statistics

import pyarrow.parquet as pq

from lakehouse.ingestion import Lakehouse, ingest_feed, ingest_master_data
from lakehouse.source import extract_path
from lakehouse.volume import find_drop, trailing_median, volume_report

START = dt.date(2018, 4, 1)


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def test_the_trailing_median_uses_the_last_days_before_that_hold_rows():
    counts = {day(0): 1, day(1): 100, day(2): 0, day(3): 120, day(4): 110, day(6): 5_000}
    assert trailing_median(counts, day(5), 3) == (110.0, 3)
    assert trailing_median(counts, day(0), 3) == (None, 0)


def test_a_drop_is_below_the_share_of_the_median_or_to_zero_from_rows():
    counts = {day(0): 100, day(1): 100, day(2): 100}
    assert find_drop("transactions", day(3), 49, counts, 0.5, 7).trailing_median == 100.0
    assert find_drop("transactions", day(3), 50, counts, 0.5, 7) is None
    assert find_drop("transactions", day(0), 0, {day(0): 3}, 0.5, 7).previous_rows == 3
    assert find_drop("transactions", day(0), 0, {}, 0.5, 7) is None


def test_volume_report_gives_rows_median_and_share_per_day(tmp_settings):
    lakehouse = Lakehouse(tmp_settings)
    for name in ("customers", "terminals"):
        ingest_master_data(lakehouse, name)
    ingest_feed(lakehouse, "transactions", [day(i) for i in range(9)])
    path = extract_path(tmp_settings.landing_path, "transactions", day(8))
    small = pq.read_table(path).slice(0, 4)
    pq.write_table(small, path)
    ingest_feed(lakehouse, "transactions", [day(8)], force=True)
    counts = [r.rows for r in volume_report(lakehouse, "transactions", [day(i) for i in range(8)])]

    first, last = volume_report(lakehouse, "transactions", [day(0), day(8)])

    assert first == (day(0), counts[0], None, None)
    median = statistics.median(counts[1:8])
    assert last == (day(8), small.num_rows, median, small.num_rows / median)
    assert last.share < tmp_settings.volume_min_share
