"""The vectorised online encoding equals Feast's serializers value for value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from ml.feature_store import online_codec

RNG = np.random.default_rng(7)
INT_EDGES = [0, 1, 127, 128, 16_383, 16_384, -1, -128, 2**31, 2**63 - 1, -(2**63)]
INT64 = ValueType.INT64
FLOAT_EDGES = [0.0, -0.0, 0.1, 1e16, 1e-5, 5e-324, np.inf, -np.inf, np.nan, 1 / 3]


def _feast(column: pa.Array, value_type: ValueType) -> tuple[list[bytes], list[str | None]]:
    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    return (
        [p.SerializeToString() for p in protos],
        [extract_text_and_num(p, False)[0] for p in protos],
    )


@pytest.mark.parametrize(
    ("column", "value_type"),
    [
        (pa.array(INT_EDGES + RNG.integers(-(2**62), 2**62, 500).tolist()), ValueType.INT64),
        (pa.array(RNG.poisson(5, 500)), ValueType.INT64),
        # An integer column with nulls reaches Feast as floats with NaN.
        (pa.array([3, None, 0, 2**40, None], pa.int64()), ValueType.INT64),
        (pa.array([None, None], pa.int64()), ValueType.INT64),
        (pa.array(FLOAT_EDGES + (RNG.standard_normal(500) * 1e3).tolist()), ValueType.DOUBLE),
        (pa.array([1.5, None, np.nan, 0.0, None], pa.float64()), ValueType.DOUBLE),
        (pa.array([None, None], pa.float64()), ValueType.DOUBLE),
    ],
)
def test_values_match_feast(column: pa.Array, value_type: ValueType) -> None:
    assert online_codec.encode_values(column, value_type) == _feast(column, value_type)


def test_null_and_nan_become_the_empty_value() -> None:
    values, texts = online_codec.encode_values(pa.array([None, np.nan]), ValueType.DOUBLE)
    assert values == [b"", b""] and texts == [None, None]


def test_entity_keys_match_feast() -> None:
    ids = np.array([1, 2, 255, 256, 10_000, -1, 2**63 - 1, -(2**63)], dtype=np.int64)
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=["terminal_id"], entity_values=[Value(int64_val=int(i))]), 3
        )
        for i in ids
    ]
    assert online_codec.entity_keys("terminal_id", ids) == expected


def _view_and_batch(store) -> tuple:
    fv = store.get_feature_view("customer_features")
    columns = {"customer_id": pa.array([5, 6], pa.int64())}
    columns["feature_timestamp"] = pa.array([0, 0], pa.timestamp("us", tz="UTC"))
    for feature in fv.features:
        columns[feature.name] = pa.array([1, None] if "_nb_tx_" in feature.name else [0.5, 2.0])
    return fv, pa.RecordBatch.from_pydict(columns)


def test_out_of_scope_batches_are_left_to_feast(feast_settings) -> None:
    from ml import feature_store

    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    fv, batch = _view_and_batch(store)
    assert online_codec.encode_batch(batch, fv, "customer_id", INT64, 3) is not None
    assert online_codec.encode_batch(batch, fv, "customer_id", INT64, 2) is None  # older key layout
    with_null_key = batch.set_column(0, "customer_id", pa.array([5, None], pa.int64()))
    assert online_codec.encode_batch(batch, fv, "customer_id", ValueType.STRING, 3) is None
    assert online_codec.encode_batch(with_null_key, fv, "customer_id", INT64, 3) is None


def test_a_layout_difference_fails_loudly(feast_settings) -> None:
    from ml import feature_store

    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    fv, batch = _view_and_batch(store)
    encoded = online_codec.encode_batch(batch, fv, "customer_id", INT64, 3)
    encoded.values[0][0] = b"\x20\x02"  # not what Feast writes for the stored value 1
    with pytest.raises(online_codec.OnlineFormatMismatchError, match="customer_features"):
        online_codec.verify_against_feast(batch, fv, "customer_id", encoded)
