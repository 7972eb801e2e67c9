"""The daily production profile: one transaction day of the prediction log, profiled and judged.

A day is the UTC date of ``tx_datetime`` (when the card was used), not ``scored_date`` (when
the service answered): a replay of 2018 scored today still lands on its 2018 days. Every row
the service answered counts, whichever model served it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from fraudops.catalog import PREDICTION_LOG
from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import Settings
from lakehouse.delta import open_table
from monitoring import store
from monitoring.profiles import Profile, merge_all, profile_frame
from monitoring.quality import QualitySummary, assess_quality

# What the production profile holds: the model inputs, the fallback flag, the answer.
PROFILE_COLUMNS = [*FEATURE_COLUMNS, "degraded", "score", "decision"]
LOG_COLUMNS = [
    "transaction_id",
    "customer_id",
    "terminal_id",
    "tx_datetime",
    *PROFILE_COLUMNS,
    "model_version",
    "served_by",
    "routing",
    "champion_version",
    "champion_score",
    "challenger_version",
    "challenger_score",
]
_TS = pa.timestamp("us", tz="UTC")


class NoTrafficError(ValueError):
    """The prediction log holds no row for the requested transaction day."""


@dataclass(frozen=True)
class ProductionInfo:
    """A stored production profile: its day, file, rows and data-quality summary."""

    day: dt.date
    path: Path
    rows: int
    quality: QualitySummary


def _day_bounds(day: dt.date) -> tuple[pa.Scalar, pa.Scalar]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return pa.scalar(start, _TS), pa.scalar(start + dt.timedelta(days=1), _TS)


def read_day(
    settings: Settings, day: dt.date, columns: Sequence[str] = LOG_COLUMNS
) -> pd.DataFrame:
    """Prediction-log rows whose transaction happened on ``day`` (UTC)."""
    table = open_table(PREDICTION_LOG.uri(settings), settings.storage_options)
    if table is None:
        raise NoTrafficError(
            f"no prediction log at {PREDICTION_LOG.uri(settings)}: the scoring service has "
            "not logged any answer yet"
        )
    start, end = _day_bounds(day)
    when = ds.field("tx_datetime")
    rows = table.to_pyarrow_dataset().to_table(
        columns=list(columns), filter=(when >= start) & (when < end)
    )
    return rows.to_pandas()


def build_production_profile(settings: Settings, day: dt.date) -> ProductionInfo:
    """Profile and judge ``day`` of the prediction log; store both; raise NoTrafficError when
    the log holds no row for the day."""
    frame = read_day(settings, day)
    if frame.empty:
        raise NoTrafficError(f"the prediction log holds no transaction of {day.isoformat()}")
    quality = assess_quality(settings, day, frame)
    columns = frame[PROFILE_COLUMNS].astype({name: "float64" for name in FEATURE_COLUMNS})
    profile = profile_frame(
        columns, chunk_rows=settings.monitoring_chunk_rows, workers=settings.monitoring_workers
    )
    path = profile.write(store.production_file(settings, day))
    store.write_json(store.quality_file(settings, day), quality.to_dict())
    return ProductionInfo(day=day, path=path, rows=len(frame), quality=quality)


def load_production(settings: Settings, day: dt.date) -> Profile:
    """The stored production profile of ``day``."""
    path = store.production_file(settings, day)
    if not path.exists():
        raise FileNotFoundError(
            f"no production profile of {day.isoformat()} at {path}; build it first "
            "(monitoring.production.build_production_profile)"
        )
    return Profile.read(path)


def load_quality(settings: Settings, day: dt.date) -> QualitySummary:
    """The stored data-quality summary of ``day``."""
    path = store.quality_file(settings, day)
    if not path.exists():
        raise FileNotFoundError(
            f"no data-quality summary of {day.isoformat()} at {path}; build the production "
            "profile first"
        )
    return QualitySummary.from_dict(store.read_json(path))


def merged_production(settings: Settings, days: Sequence[dt.date]) -> Profile:
    """The production profiles of ``days`` merged into one (e.g. a week)."""
    return merge_all([load_production(settings, day) for day in sorted(days)])


def profiled_days(settings: Settings) -> list[dt.date]:
    """Days that have a stored production profile, oldest first."""
    folder = settings.monitoring_path / "production"
    return [day for day, _ in store.dated(folder, "*.bin")]
