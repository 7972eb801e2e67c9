"""The ingestion log: a small append-only Delta table saying which days started and completed.

Raw and quarantine are two Delta tables, so replacing a day takes two commits. A run appends
``started`` for its days before the first and ``complete`` after the second; a day whose latest
``started`` has no ``complete`` of the same run was interrupted and must be ingested again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import pyarrow as pa

from lakehouse import delta
from lakehouse.tables import Lakehouse

# Each run appends two small files; beyond this many the log is compacted into one.
COMPACT_ABOVE = 10
STARTED = "started"
COMPLETE = "complete"
LOG_SCHEMA = pa.schema(
    [
        ("feed", pa.string()),
        ("day", pa.date32()),
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("rows", pa.int64()),
        ("quarantined", pa.int64()),
        ("logged_at", pa.timestamp("us", tz="UTC")),
    ]
)


def record(
    lakehouse: Lakehouse,
    feed: str,
    run_id: str,
    status: str,
    days: Sequence[dt.date],
    counts: Mapping[dt.date, tuple[int, int]] | None = None,
) -> None:
    """Append a ``status`` entry per day of a run; ``counts``: day -> (rows, quarantined)."""
    counts = counts or {}
    stamp = dt.datetime.now(dt.UTC)
    entries = pa.table(
        {
            "feed": [feed] * len(days),
            "day": list(days),
            "run_id": [run_id] * len(days),
            "status": [status] * len(days),
            "rows": [counts.get(d, (None, None))[0] for d in days],
            "quarantined": [counts.get(d, (None, None))[1] for d in days],
            "logged_at": [stamp] * len(days),
        },
        schema=LOG_SCHEMA,
    )
    delta.append(lakehouse.log_uri, entries, lakehouse.storage_options, compact_above=COMPACT_ABOVE)


def incomplete_days(lakehouse: Lakehouse, feed: str) -> list[dt.date]:
    """Days of ``feed`` whose latest ingestion started but never completed (ingest them again)."""
    if not delta.table_exists(lakehouse.log_uri, lakehouse.storage_options):
        return []
    log = delta.read_table(
        lakehouse.log_uri, filters=[("feed", "=", feed)], storage_options=lakehouse.storage_options
    ).to_pandas()
    if log.empty:
        return []
    starts = log[log["status"] == STARTED].sort_values("logged_at").groupby("day").tail(1)
    done = log[log["status"] == COMPLETE]
    completed = set(zip(done["day"], done["run_id"], strict=True))
    return sorted(
        day
        for day, run in zip(starts["day"], starts["run_id"], strict=True)
        if (day, run) not in completed
    )
