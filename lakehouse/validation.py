"""Row-level validation of the raw feeds: good rows go on, bad rows are quarantined with reasons.

Every rule is vectorised over a pandas frame. A row can fail several rules; its quarantine
reason lists all of them, separated by ``"; "``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

QUARANTINE_SCHEMA = pa.schema(
    [
        ("feed", pa.string()),
        ("partition_date", pa.date32()),
        ("record_key", pa.string()),
        ("reason", pa.string()),
        ("raw_record", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class FeedSpec:
    """The typed contract of one raw feed."""

    name: str
    key: str
    id_columns: tuple[str, ...]
    timestamp_column: str
    amount_columns: tuple[str, ...] = ()
    int_columns: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that must be present and non-null."""
        return (*self.id_columns, self.timestamp_column, *self.amount_columns, *self.int_columns)


TRANSACTIONS = FeedSpec(
    name="transactions",
    key="transaction_id",
    id_columns=("transaction_id", "customer_id", "terminal_id"),
    timestamp_column="tx_datetime",
    amount_columns=("tx_amount",),
)
FRAUD_REPORTS = FeedSpec(
    name="fraud_reports",
    key="transaction_id",
    id_columns=("transaction_id", "customer_id", "terminal_id"),
    timestamp_column="reported_at",
    int_columns=("fraud_scenario",),
)

MAX_AMOUNT = 1_000_000.0


@dataclass(frozen=True)
class ValidationResult:
    """Typed valid rows and quarantined rows of one batch."""

    valid: pd.DataFrame
    quarantined: pa.Table

    @property
    def quarantine_ratio(self) -> float:
        """Share of the batch that was quarantined."""
        total = len(self.valid) + self.quarantined.num_rows
        return self.quarantined.num_rows / total if total else 0.0


class _Reasons:
    """Collects rule failures per row without building strings for good rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.failures: list[tuple[str, np.ndarray]] = []

    def add(self, reason: str, mask: np.ndarray | pd.Series) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.failures.append((reason, mask))

    @property
    def bad(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for _, mask in self.failures:
            out |= mask
        return out

    def text(self, rows: np.ndarray) -> list[str]:
        return ["; ".join(r for r, m in self.failures if m[i]) for i in rows]


def _to_int(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Coerce to nullable Int64; also return which non-null inputs were not integers."""
    numeric = pd.to_numeric(series, errors="coerce")
    not_integral = numeric.notna() & (np.floor(numeric.astype("float64")) != numeric)
    invalid = (series.notna() & numeric.isna()) | not_integral
    return numeric.where(~invalid).astype("Int64"), invalid.to_numpy()


def _to_utc(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Coerce to UTC timestamps (naive values are read as UTC); flag unparseable values."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC")
    else:
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    invalid = series.notna() & parsed.isna()
    return parsed.astype("datetime64[us, UTC]"), invalid.to_numpy()


def validate(
    batch: pa.Table | pd.DataFrame,
    spec: FeedSpec,
    day: dt.date,
    known_ids: dict[str, np.ndarray] | None = None,
    now: dt.datetime | None = None,
) -> ValidationResult:
    """Split a raw batch of ``spec`` for partition ``day`` into typed valid and quarantined rows.

    Rules: required columns present, values of the right type, no nulls in required fields,
    finite non-negative amounts below ``MAX_AMOUNT``, ids known to master data
    (``known_ids`` maps an id column to its allowed values), unique keys within the batch,
    timestamps inside the partition day.
    """
    raw = batch.to_pandas() if isinstance(batch, pa.Table) else batch.copy()
    raw = raw.reset_index(drop=True)
    n = len(raw)
    reasons = _Reasons(n)
    typed = pd.DataFrame(index=raw.index)

    for col in spec.required:
        if col not in raw.columns:
            reasons.add(f"missing column {col}", np.ones(n, dtype=bool))
            raw[col] = pd.Series([None] * n, dtype="object")
        reasons.add(f"null {col}", raw[col].isna())

    for col in (*spec.id_columns, *spec.int_columns):
        typed[col], invalid = _to_int(raw[col])
        reasons.add(f"invalid type {col} (expected integer)", invalid)
    for col in spec.id_columns:
        reasons.add(f"non-positive {col}", (typed[col] <= 0).fillna(False))

    for col in spec.amount_columns:
        values = pd.to_numeric(raw[col], errors="coerce").astype("float64")
        reasons.add(f"invalid type {col} (expected number)", raw[col].notna() & values.isna())
        finite = np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        reasons.add(f"non-finite {col}", values.notna().to_numpy() & ~finite)
        reasons.add(f"negative {col}", (values < 0).to_numpy())
        reasons.add(f"{col} above {MAX_AMOUNT:g}", (finite & (values > MAX_AMOUNT)).to_numpy())
        typed[col] = values

    ts_col = spec.timestamp_column
    typed[ts_col], invalid = _to_utc(raw[ts_col])
    reasons.add(f"invalid type {ts_col} (expected timestamp)", invalid)
    lo = pd.Timestamp(day, tz="UTC")
    outside = typed[ts_col].notna() & (
        (typed[ts_col] < lo) | (typed[ts_col] >= lo + pd.Timedelta(days=1))
    )
    reasons.add(f"{ts_col} outside partition {day.isoformat()}", outside)

    for col, allowed in (known_ids or {}).items():
        unknown = typed[col].notna() & ~typed[col].isin(allowed)
        reasons.add(f"unknown {col}", unknown)

    # Only rows that pass every other rule compete for a key; the first occurrence wins.
    dup = typed[spec.key].duplicated(keep="first").to_numpy() & ~reasons.bad
    reasons.add(f"duplicate {spec.key}", dup)

    bad = reasons.bad
    for col in raw.columns:
        if col not in typed.columns and col in spec.required:
            typed[col] = raw[col]
    valid = typed.loc[~bad, list(spec.required)].reset_index(drop=True)
    for col in (*spec.id_columns,):
        valid[col] = valid[col].astype("int64")
    for col in spec.int_columns:
        valid[col] = valid[col].astype("int8")
    return ValidationResult(valid=valid, quarantined=_quarantine(raw, bad, reasons, spec, day, now))


def _quarantine(
    raw: pd.DataFrame,
    bad: np.ndarray,
    reasons: _Reasons,
    spec: FeedSpec,
    day: dt.date,
    now: dt.datetime | None,
) -> pa.Table:
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return QUARANTINE_SCHEMA.empty_table()
    bad_raw = raw.iloc[rows]
    records = [json.dumps(r, default=str) for r in bad_raw.to_dict(orient="records")]
    stamp = now or dt.datetime.now(dt.UTC)
    return pa.table(
        {
            "feed": [spec.name] * rows.size,
            "partition_date": [day] * rows.size,
            "record_key": [None if pd.isna(v) else str(v) for v in bad_raw[spec.key]],
            "reason": reasons.text(rows),
            "raw_record": records,
            "quarantined_at": [stamp] * rows.size,
        },
        schema=QUARANTINE_SCHEMA,
    )
