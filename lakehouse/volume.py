"""The volume guard: a day's rows against the trailing median of the days before it in raw.

An extract that is empty or far smaller than usual is a broken delivery far more often than a
real drop in payments, and replacing a partition with it silently loses the day. Ingestion
refuses such a day unless forced; :func:`volume_report` lets a data-quality check watch the
days that were forced or had no history to compare with.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from lakehouse import delta
from lakehouse.tables import PARTITION_COLUMNS, Lakehouse

MIN_SHARE_SETTING = "FRAUDOPS_VOLUME_MIN_SHARE"


class VolumeRow(NamedTuple):
    """A day's rows in raw, the median of the trailing days before it, and their ratio."""

    day: dt.date
    rows: int
    trailing_median: float | None
    share: float | None


@dataclass(frozen=True)
class VolumeDrop:
    """A day the guard refuses: what it would write against what raw holds around it."""

    feed: str
    day: dt.date
    rows: int
    previous_rows: int
    trailing_median: float | None
    trailing_days: int
    min_share: float

    @property
    def below_share(self) -> bool:
        """Whether the day is below the share of the trailing median (else: it went to zero)."""
        median = self.trailing_median
        return median is not None and self.rows < self.min_share * median

    def __str__(self) -> str:
        head = f"volume guard refused {self.feed} {self.day.isoformat()}: {self.rows:,} valid rows"
        if self.previous_rows:
            head += f" would replace the {self.previous_rows:,} rows raw holds for the day"
        if self.below_share:
            why = (
                f"which is below {self.min_share:g} x {self.trailing_median:,.0f} rows, the median "
                f"of the {self.trailing_days} previous days in raw ({MIN_SHARE_SETTING})"
            )
            fix = f"ingest the day with force=True or lower {MIN_SHARE_SETTING}"
        else:
            why = "so the day would drop to zero rows"
            fix = "ingest the day with force=True"
        return f"{head}, {why}. Check the extract; if the drop is real, {fix}"


def trailing_median(
    counts: Mapping[dt.date, int], day: dt.date, trailing_days: int
) -> tuple[float | None, int]:
    """Median rows of the last ``trailing_days`` days before ``day`` with rows, and their number."""
    previous = sorted(d for d, n in counts.items() if d < day and n > 0)[-trailing_days:]
    if not previous:
        return None, 0
    return float(statistics.median(counts[d] for d in previous)), len(previous)


def find_drop(
    feed: str,
    day: dt.date,
    rows: int,
    counts: Mapping[dt.date, int],
    min_share: float,
    trailing_days: int,
) -> VolumeDrop | None:
    """The drop if ``rows`` for ``day`` is zero where raw had rows, or below the median share.

    ``counts`` are the rows per day raw holds (or will hold, for the earlier days of a run).
    """
    median, used = trailing_median(counts, day, trailing_days)
    previous = counts.get(day, 0)
    below = median is not None and rows < min_share * median
    if (rows == 0 and previous > 0) or below:
        return VolumeDrop(feed, day, rows, previous, median, used or trailing_days, min_share)
    return None


def volume_report(lakehouse: Lakehouse, feed: str, days: Sequence[dt.date]) -> list[VolumeRow]:
    """Rows of each of ``days`` in raw against the median of the trailing days before it."""
    counts = delta.partition_row_counts(
        lakehouse.raw_uri(feed), PARTITION_COLUMNS[feed], lakehouse.storage_options
    )
    trailing = lakehouse.settings.volume_trailing_days
    rows = []
    for day in sorted(set(days)):
        median, _ = trailing_median(counts, day, trailing)
        n = counts.get(day, 0)
        share = n / median if median else None
        rows.append(VolumeRow(day, n, median, share))
    return rows
