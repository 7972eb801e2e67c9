"""Delta add-action statistics from the per-file statistics DuckDB's COPY returns."""

import datetime as dt
import json
from typing import Any

import pyarrow as pa


def add_action_stats(rows: int, statistics: dict[str, dict[str, Any]], schema: pa.Schema) -> str:
    """The ``stats`` JSON of a Delta add action: row and null counts, min and max values.

    Readers skip files with them (deltalake turns them into dataset guarantees), so they must
    be exact: a column gets min/max only when DuckDB says they are exact and free of NaN.
    """
    stats: dict[str, Any] = {"numRecords": rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    for quoted, values in statistics.items():
        name = quoted.strip('"')
        if name not in schema.names:
            continue
        if "null_count" in values:
            stats["nullCount"][name] = int(values["null_count"])
        exact = values.get("min_is_exact") == "true" and values.get("max_is_exact") == "true"
        if not exact or values.get("has_nan") == "true" or "min" not in values:
            continue
        convert = _converter(schema.field(name).type)
        if convert is not None:
            stats["minValues"][name] = convert(values["min"])
            stats["maxValues"][name] = convert(values["max"])
    return json.dumps(stats)


def _converter(arrow_type: pa.DataType) -> Any:
    """How to turn DuckDB's text of a min/max into the JSON value Delta expects, if at all."""
    if pa.types.is_integer(arrow_type):
        return int
    if pa.types.is_floating(arrow_type):
        return float
    if pa.types.is_date(arrow_type):
        return str
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return _utc_timestamp
    return None


def _utc_timestamp(text: str) -> str:
    """DuckDB's ``2018-04-02 00:00:00+00`` as Delta's ``2018-04-02T00:00:00.000000Z``."""
    value = dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
