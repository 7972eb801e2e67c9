"""Row-level validation of the raw feeds: good rows go on, bad rows are quarantined with reasons.

Every rule is vectorised over a pandas frame. A row can fail several rules; its quarantine
reason lists all of them, separated by ``"; "``. A quarantined row keeps its raw values as strict
JSON: missing values (None, NaN, NaT) become ``null`` and infinities the strings ``"Infinity"``
and ``"-Infinity"``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
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
INT64_MAX = np.iinfo(np.int64).max
# float64(2**63) is the smallest float that no longer fits int64; every float below it does.
_INT64_FLOAT_BOUND = 2.0**63

_NULLABLE_INTS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}

# Given the keys of rows that pass every other rule, whether another partition already holds them.
KeysTaken = Callable[[np.ndarray], np.ndarray]


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


def _parse_int(value: object) -> int | float | None:
    """One loosely typed value as a Python int, None if missing, NaN if not an integer."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return math.nan
    if isinstance(value, int | np.integer):
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return math.nan
    return int(number) if math.isfinite(number) and number.is_integer() else math.nan


def _to_int(series: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Coerce to nullable Int64; also flag non-integer inputs and integers outside int64.

    Integers are never routed through float64, so ids above 2**53 keep every digit.
    """
    none = np.zeros(len(series), dtype=bool)
    kind = series.dtype.kind
    if kind == "i":
        return series.astype("Int64"), none, none
    if kind == "u":
        unsigned = series.astype("UInt64")
        out_of_range = (unsigned > INT64_MAX).fillna(False).to_numpy(dtype=bool)
        return unsigned.mask(out_of_range).astype("Int64"), none, out_of_range
    if kind == "f":
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(values)
        out_of_range = finite & ((values >= _INT64_FLOAT_BOUND) | (values < -_INT64_FLOAT_BOUND))
        invalid = (~np.isnan(values) & ~finite) | (finite & (np.floor(values) != values))
        keep = finite & ~invalid & ~out_of_range
        typed = pd.Series(np.where(keep, values, np.nan), index=series.index).astype("Int64")
        return typed, invalid, out_of_range
    parsed = [_parse_int(v) for v in series.tolist()]
    invalid = np.array([isinstance(v, float) for v in parsed], dtype=bool)
    out_of_range = np.array(
        [isinstance(v, int) and not -INT64_MAX - 1 <= v <= INT64_MAX for v in parsed], dtype=bool
    )
    keep = [
        v if isinstance(v, int) and not bad else None
        for v, bad in zip(parsed, out_of_range, strict=True)
    ]
    return pd.Series(pd.array(keep, dtype="Int64"), index=series.index), invalid, out_of_range


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
    keys_taken: KeysTaken | None = None,
) -> ValidationResult:
    """Split a raw batch of ``spec`` for partition ``day`` into typed valid and quarantined rows.

    Rules: required columns present, values of the right type, ids within int64, no nulls in
    required fields, finite non-negative amounts below ``MAX_AMOUNT``, ids known to master data
    (``known_ids`` maps an id column to its allowed values), unique keys within the batch and,
    with ``keys_taken``, keys that no other partition holds, timestamps inside the partition day.
    """
    return check(batch, spec, day, known_ids).result(keys_taken, now)


@dataclass(frozen=True)
class CheckedBatch:
    """A batch with every rule applied except uniqueness against other partitions."""

    spec: FeedSpec
    day: dt.date
    raw: pd.DataFrame
    typed: pd.DataFrame
    reasons: _Reasons

    @property
    def passing(self) -> int:
        """Rows that pass every rule checked so far."""
        return int((~self.reasons.bad).sum())

    def result(
        self, keys_taken: KeysTaken | None = None, now: dt.datetime | None = None
    ) -> ValidationResult:
        """Typed valid and quarantined rows; keys that ``keys_taken`` flags are quarantined."""
        spec, typed, n = self.spec, self.typed, len(self.raw)
        reasons = _Reasons(n)
        reasons.failures = list(self.reasons.failures)
        candidates = ~reasons.bad
        if keys_taken is not None and candidates.any():
            elsewhere = np.zeros(n, dtype=bool)
            keys = typed[spec.key].to_numpy(dtype="int64", na_value=0)
            elsewhere[candidates] = keys_taken(keys[candidates])
            reasons.add(f"duplicate_{spec.key}", elsewhere)
        bad = reasons.bad
        valid = typed.loc[~bad, list(spec.required)].reset_index(drop=True)
        for col in spec.id_columns:
            valid[col] = valid[col].astype("int64")
        for col in spec.int_columns:
            valid[col] = valid[col].astype("int8")
        quarantined = _quarantine(self.raw, bad, reasons, spec, self.day, now)
        return ValidationResult(valid=valid, quarantined=quarantined)


def check(
    batch: pa.Table | pd.DataFrame,
    spec: FeedSpec,
    day: dt.date,
    known_ids: dict[str, np.ndarray] | None = None,
) -> CheckedBatch:
    """Apply every rule of :func:`validate` but uniqueness against other partitions."""
    # Nullable integer dtypes: a null would otherwise turn an id column into lossy float64.
    raw = (
        batch.to_pandas(types_mapper=_NULLABLE_INTS.get)
        if isinstance(batch, pa.Table)
        else batch.copy()
    )
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
        typed[col], invalid, out_of_range = _to_int(raw[col])
        reasons.add(f"invalid type {col} (expected integer)", invalid)
        reasons.add(f"{col} outside the int64 range", out_of_range)
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
    candidates = ~reasons.bad
    dup = np.zeros(n, dtype=bool)
    dup[candidates] = typed[spec.key][candidates].duplicated(keep="first").to_numpy()
    reasons.add(f"duplicate {spec.key}", dup)
    return CheckedBatch(spec=spec, day=day, raw=raw, typed=typed, reasons=reasons)


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
    records = [_json_record(r) for r in bad_raw.to_dict(orient="records")]
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


def _jsonable(value: object) -> object:
    """``value`` with NaN and missing values as None and infinities as strings, recursively."""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    return value


def _json_record(record: dict) -> str:
    """One raw row as strict JSON (no NaN or Infinity literals, which JSON does not have)."""
    return json.dumps(_jsonable(record), default=str, allow_nan=False)
