"""Errors of an ingestion call that could not write everything it was asked to."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.ingestion import IngestionReport


class IngestionFailedError(RuntimeError):
    """Some days were not ingested and keep their previous partitions; the other days landed."""

    def __init__(self, report: IngestionReport) -> None:
        self.report = report
        failed = sorted(report.failures)
        lines = "\n".join(f"  {day.isoformat()}: {report.failures[day]}" for day in failed)
        landed = len(report.days)
        super().__init__(
            f"{report.feed}: {len(failed)} day(s) not ingested, their raw and quarantine "
            f"partitions are unchanged ({landed} other day(s) landed):\n{lines}\n"
            "Fix what each line names and ingest those days again."
        )

    @property
    def days(self) -> list[dt.date]:
        """The days that were not ingested."""
        return sorted(self.report.failures)


class VolumeDropError(IngestionFailedError):
    """Every day that was not ingested was refused by the volume guard."""


class ConcurrentIngestionError(RuntimeError):
    """Every attempt of an ingestion lost a commit to another writer of the same partitions."""

    def __init__(self, feed: str, attempts: int, cause: Exception) -> None:
        self.feed = feed
        self.attempts = attempts
        super().__init__(
            f"{feed}: lost to a concurrent writer on all {attempts} attempts; last: {cause}. "
            "Raw was not changed by the lost commit and its days are left marked incomplete in "
            "the ingestion log, so the next run redoes them; run one ingestion per feed at a "
            "time and run it again"
        )
