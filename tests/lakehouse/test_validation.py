"""Row validation on its own: ids out of range, precision, keys, and strict-JSON raw records."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lakehouse.validation import TRANSACTIONS, validate

DAY = dt.date(2018, 4, 3)
AT = pd.Timestamp("2018-04-03T10:00", tz="UTC")


def _batch(ids: pa.Array, **columns: pa.Array) -> pa.Table:
    n = len(ids)
    base = {
        "transaction_id": ids,
        "tx_datetime": pa.array([AT] * n, pa.timestamp("us", tz="UTC")),
        "customer_id": pa.array([1] * n, pa.int64()),
        "terminal_id": pa.array([1] * n, pa.int64()),
        "tx_amount": pa.array([10.0] * n, pa.float64()),
    }
    return pa.table({**base, **columns})


@pytest.mark.parametrize(
    "ids",
    [
        pa.array([2**63, 7], pa.uint64()),
        pa.array([1e20, 7.0], pa.float64()),
        pa.array(["9223372036854775808", "7"]),
        pa.array(["-9223372036854775809", "7"]),
    ],
    ids=["uint64", "float", "string", "negative string"],
)
def test_an_id_outside_int64_is_quarantined_with_its_reason(ids):
    result = validate(_batch(ids), TRANSACTIONS, DAY)
    assert result.valid["transaction_id"].tolist() == [7]
    assert result.quarantined.column("reason").to_pylist() == [
        "transaction_id outside the int64 range"
    ]


def test_large_ids_keep_every_digit_next_to_a_null():
    big = 2**53 + 1  # the first integer float64 cannot hold
    ids = pa.array([big, None], pa.int64())
    result = validate(_batch(ids), TRANSACTIONS, DAY)
    assert result.valid["transaction_id"].tolist() == [big]
    assert result.quarantined.column("record_key").to_pylist() == [None]
    assert json.loads(result.quarantined.column("raw_record")[0].as_py())["transaction_id"] is None


def test_a_good_row_is_not_a_duplicate_of_a_rejected_row_with_its_id():
    batch = _batch(pa.array([5, 5], pa.int64()), tx_amount=pa.array([-1.0, 10.0], pa.float64()))
    result = validate(batch, TRANSACTIONS, DAY)
    assert result.valid["tx_amount"].tolist() == [10.0]
    assert result.quarantined.column("reason").to_pylist() == ["negative tx_amount"]


def test_keys_held_elsewhere_are_quarantined_as_duplicates():
    batch = _batch(pa.array([1, 2, 3], pa.int64()))
    result = validate(batch, TRANSACTIONS, DAY, keys_taken=lambda keys: np.isin(keys, [2]))
    assert result.valid["transaction_id"].tolist() == [1, 3]
    assert result.quarantined.column("reason").to_pylist() == ["duplicate_transaction_id"]


def test_raw_records_are_strict_json_with_nan_as_null_and_infinity_as_strings():
    amounts = pa.array([float("nan"), float("inf"), float("-inf")], pa.float64())
    batch = _batch(pa.array([1, 2, 3], pa.int64()), tx_amount=amounts)
    result = validate(batch, TRANSACTIONS, DAY)

    def refuse(constant):
        raise ValueError(constant)

    records = [
        json.loads(r, parse_constant=refuse) for r in result.quarantined["raw_record"].to_pylist()
    ]
    assert [r["tx_amount"] for r in records] == [None, "Infinity", "-Infinity"]
