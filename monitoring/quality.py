"""Data quality of one day of the prediction log, judged against the settings' limits.

What reaches the log is what the scoring service accepted: a transaction whose amount is null
or negative is refused by the request schema (serving/schemas.py, a 4xx) and never logged, and
ingestion quarantines the same rows of the batch feed. So a broken upstream field shows in two
places: values that pass the schema but are implausible (an amount in cents is a hundred times
its card's usual spend) and the share of the day's source rows that ingestion quarantined.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from fraudops.catalog import INGESTION_LOG, RAW_CUSTOMERS, RAW_TERMINALS
from fraudops.contracts import FEATURE_COLUMNS, is_count, is_flag
from fraudops.settings import Settings
from lakehouse.delta import read_table, table_exists

# The columns whose nulls and ranges are checked: the model inputs and the served score.
CHECKED_COLUMNS = [*FEATURE_COLUMNS, "score"]
MEAN_AMOUNT = "customer_id_avg_amount_30day_window"


@dataclass(frozen=True)
class QualitySummary:
    """Data-quality figures of one day's prediction-log rows and the limits they broke."""

    day: dt.date
    rows: int
    null_share: dict[str, float]
    out_of_range: dict[str, int]
    degraded_share: float
    unknown_entity_share: float
    implausible_amount_share: float
    # Share of the day's source transactions quarantined at ingestion; None before ingestion.
    rejected_share: float | None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every limit held."""
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {**asdict(self), "day": self.day.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> QualitySummary:
        """The summary of :meth:`to_dict`."""
        return cls(**{**data, "day": dt.date.fromisoformat(str(data["day"]))})


def out_of_range_mask(name: str, values: np.ndarray) -> np.ndarray:
    """True where a non-null value of column ``name`` is outside its domain."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        if is_flag(name):
            bad = (values != 0) & (values != 1)
        elif is_count(name):
            bad = (values < 0) | (np.floor(values) != values)
        elif "_risk_" in name or name == "score":
            bad = (values < 0) | (values > 1)
        else:  # amounts and average amounts
            bad = (values < 0) | np.isinf(values)
    return present & bad


def _known(settings: Settings, table, column: str) -> np.ndarray:
    uri = table.uri(settings)
    if not table_exists(uri, settings.storage_options):
        raise FileNotFoundError(
            f"no master data at {uri}: ingest lakehouse/{table.layer}_{table.name} first "
            "(unknown entities are judged against it)"
        )
    ids = read_table(uri, columns=[column], storage_options=settings.storage_options)
    return ids.column(column).to_numpy()


def rejected_share(settings: Settings, day: dt.date) -> float | None:
    """Share of ``day``'s source transactions that ingestion quarantined (None: not ingested)."""
    uri = INGESTION_LOG.uri(settings)
    if not table_exists(uri, settings.storage_options):
        return None
    log = read_table(
        uri,
        columns=["feed", "day", "status", "rows", "quarantined", "logged_at"],
        storage_options=settings.storage_options,
    )
    mask = pc.and_(
        pc.and_(pc.equal(log["feed"], "transactions"), pc.equal(log["status"], "complete")),
        pc.equal(log["day"], day),
    )
    entries = log.filter(mask).to_pandas()
    if entries.empty:
        return None
    newest = entries.sort_values("logged_at").iloc[-1]
    total = int(newest["rows"]) + int(newest["quarantined"])
    return int(newest["quarantined"]) / total if total else None


def _failures(summary: QualitySummary, settings: Settings) -> list[str]:
    rows = max(summary.rows, 1)
    failures = [
        f"{name}: {share:.2%} null (limit {settings.quality_max_null_share:.2%})"
        for name, share in summary.null_share.items()
        if share > settings.quality_max_null_share
    ]
    failures += [
        f"{name}: {count} values out of range ({count / rows:.2%}, "
        f"limit {settings.quality_max_out_of_range_share:.2%})"
        for name, count in summary.out_of_range.items()
        if count / rows > settings.quality_max_out_of_range_share
    ]
    checks = [
        ("degraded answers", summary.degraded_share, settings.quality_max_degraded_share),
        (
            "unknown entities",
            summary.unknown_entity_share,
            settings.quality_max_unknown_entity_share,
        ),
        (
            f"tx_amount above {settings.quality_max_amount_ratio:g}x the card's 30-day mean",
            summary.implausible_amount_share,
            settings.quality_max_implausible_amount_share,
        ),
        (
            "source transactions quarantined at ingestion",
            summary.rejected_share,
            settings.quality_max_rejected_share,
        ),
    ]
    failures += [
        f"{what}: {share:.2%} (limit {limit:.2%})"
        for what, share, limit in checks
        if share is not None and share > limit
    ]
    return failures


def summarize_quality(
    frame: pd.DataFrame,
    day: dt.date,
    settings: Settings,
    customers: np.ndarray,
    terminals: np.ndarray,
    rejected: float | None,
) -> QualitySummary:
    """The quality summary of ``frame`` (one day of the log) given the known entity ids."""
    rows = len(frame)
    null_share, out_of_range = {}, {}
    for name in CHECKED_COLUMNS:
        values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        null_share[name] = float(np.isnan(values).mean()) if rows else 0.0
        out_of_range[name] = int(out_of_range_mask(name, values).sum())
    unknown = ~np.isin(frame["customer_id"].to_numpy(), customers) | ~np.isin(
        frame["terminal_id"].to_numpy(), terminals
    )
    amount = frame["tx_amount"].to_numpy(dtype="float64", na_value=np.nan)
    mean = frame[MEAN_AMOUNT].to_numpy(dtype="float64", na_value=np.nan)
    has_mean = mean > 0
    with np.errstate(invalid="ignore"):
        implausible = has_mean & (amount > settings.quality_max_amount_ratio * mean)
    summary = QualitySummary(
        day=day,
        rows=rows,
        null_share=null_share,
        out_of_range=out_of_range,
        degraded_share=float(frame["degraded"].astype(bool).mean()) if rows else 0.0,
        unknown_entity_share=float(unknown.mean()) if rows else 0.0,
        implausible_amount_share=float(implausible.sum() / has_mean.sum())
        if has_mean.any()
        else 0.0,
        rejected_share=rejected,
    )
    return QualitySummary(**{**summary.__dict__, "failures": _failures(summary, settings)})


def assess_quality(settings: Settings, day: dt.date, frame: pd.DataFrame) -> QualitySummary:
    """The quality summary of ``frame``, with the lakehouse's master data and ingestion log."""
    return summarize_quality(
        frame,
        day,
        settings,
        _known(settings, RAW_CUSTOMERS, "customer_id"),
        _known(settings, RAW_TERMINALS, "terminal_id"),
        rejected_share(settings, day),
    )
