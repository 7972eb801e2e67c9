"""Vectorised encoding of entity rows into Feast's online-store bytes (entity keys, values).

Feast serializes one protobuf per value and one entity key per row in Python, which is most of
its materialization time. The layouts are fixed for what our views hold, so numpy builds them
for a whole batch: an entity key (``entity_key_serialization_version`` 3, one INT64 join key)
is a constant prefix and the 8 little-endian bytes of the id; a ``ValueProto`` is one tag byte
and a varint (``int64_val``) or 8 little-endian bytes (``double_val``). Null and NaN become the
empty ``ValueProto`` (``b""``) and no text, as Feast's conversion does.

``encode_batch`` returns ``None`` for anything outside that scope (the caller then uses Feast's
own path), and checks sample rows against Feast's serializers, so a Feast upgrade that changes
a layout fails loudly instead of writing rows Feast cannot read.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType as ProtoValueType
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

KEY_SERIALIZATION_VERSION = 3
# Protobuf tags of Value.int64_val (field 4, varint) and Value.double_val (field 5, fixed64).
INT64_TAG, DOUBLE_TAG = 0x20, 0x29
SUPPORTED = {ValueType.INT64, ValueType.DOUBLE}


class OnlineFormatMismatchError(RuntimeError):
    """Our encoding of a row differs from Feast's: the installed Feast changed a layout."""


@dataclass
class EncodedBatch:
    """Entity rows of one feature view in Feast's online bytes, rows in input order."""

    ids: np.ndarray  # int64 entity ids
    entity_keys: list[bytes]  # serialize_entity_key of each row
    features: list[str]  # feature names, in the view's order
    values: list[list[bytes]]  # per feature: serialized ValueProto per row
    texts: list[list[str | None]]  # per feature: Feast's value_text per row
    timestamps: list[dt.datetime]  # distinct event timestamps (tz-aware, UTC)
    ts_index: np.ndarray  # per row: index into ``timestamps``

    @property
    def num_rows(self) -> int:
        """Entity rows in the batch."""
        return len(self.entity_keys)


def _split(buffer: bytes, lengths: np.ndarray) -> list[bytes]:
    """Cut a concatenation of variable-length records back into one ``bytes`` per record."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [buffer[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def entity_keys(join_key: str, ids: np.ndarray) -> list[bytes]:
    """Feast's serialized entity key (version 3, one INT64 join key) of each id."""
    name = join_key.encode()
    # key count, then (type STRING, length, name), then (type INT64, length 8, value)
    prefix = struct.pack("<III", 1, ProtoValueType.STRING, len(name)) + name
    prefix += struct.pack("<II", ProtoValueType.INT64, 8)
    width = len(prefix) + 8
    out = np.empty((len(ids), width), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix) :] = ids.astype("<i8").view(np.uint8).reshape(-1, 8)
    buffer = out.tobytes()
    return [buffer[i : i + width] for i in range(0, len(buffer), width)]


def _int64_protos(values: np.ndarray, null: np.ndarray) -> list[bytes]:
    """``ValueProto(int64_val=v)`` bytes: tag and varint (two's complement, up to 10 bytes)."""
    unsigned = values.astype("<i8").view(np.uint64)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
    groups = ((unsigned[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    # Varint length: 1 + index of the highest non-zero 7-bit group (0 still takes one byte).
    nonzero = groups != 0
    length = np.where(nonzero.any(axis=1), 10 - np.argmax(nonzero[:, ::-1], axis=1), 1)
    groups[np.arange(10) < (length - 1)[:, None]] |= 0x80  # continuation bits
    matrix = np.concatenate([np.full((len(values), 1), INT64_TAG, np.uint8), groups], axis=1)
    sizes = np.where(null, 0, length + 1)
    return _split(matrix[np.arange(11) < sizes[:, None]].tobytes(), sizes)


def _double_protos(values: np.ndarray, null: np.ndarray) -> list[bytes]:
    """``ValueProto(double_val=v)`` bytes: tag and 8 little-endian bytes."""
    matrix = np.empty((len(values), 9), dtype=np.uint8)
    matrix[:, 0] = DOUBLE_TAG
    matrix[:, 1:] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    sizes = np.where(null, 0, 9)
    return _split(matrix[np.arange(9) < sizes[:, None]].tobytes(), sizes)


def _texts(values: np.ndarray, null: np.ndarray) -> list[str | None]:
    """Feast's ``value_text``: ``str`` of the Python value, ``None`` for an empty value."""
    texts: list[str | None] = list(map(str, values.tolist()))
    for i in np.flatnonzero(null).tolist():
        texts[i] = None
    return texts


def encode_values(column: pa.Array, value_type: ValueType) -> tuple[list[bytes], list[str | None]]:
    """ValueProto bytes and value_text of a column, as Feast converts it for ``value_type``."""
    # The same numpy view Feast converts: an int column with nulls arrives as float with NaN.
    array = column.to_numpy(zero_copy_only=False)
    null = np.isnan(array) if array.dtype.kind == "f" else np.zeros(len(array), dtype=bool)
    if value_type == ValueType.INT64:
        # Feast applies int() to each value; truncation toward zero, as astype does.
        values = np.where(null, 0, array).astype(np.int64)
        return _int64_protos(values, null), _texts(values, null)
    values = np.where(null, 0.0, array).astype(np.float64)
    return _double_protos(values, null), _texts(values, null)


def _supported(
    table: pa.RecordBatch, fv: FeatureView, join_key: str, key_type: ValueType, version: int
) -> bool:
    """Whether the batch is inside the layouts ``encode_batch`` reproduces."""
    types = [f.dtype.to_value_type() for f in fv.features]
    source = fv.batch_source
    return (
        version == KEY_SERIALIZATION_VERSION
        and key_type == ValueType.INT64
        and len(fv.entities) == 1
        and all(t in SUPPORTED for t in types)
        and pa.types.is_integer(table.schema.field(join_key).type)
        and table.column(join_key).null_count == 0
        and table.column(source.timestamp_field).null_count == 0
        and not source.created_timestamp_column
    )


def encode_batch(
    table: pa.RecordBatch, fv: FeatureView, join_key: str, key_type: ValueType, version: int
) -> EncodedBatch | None:
    """Feast's online bytes of a batch of ``fv`` rows, or ``None`` when out of scope."""
    if not _supported(table, fv, join_key, key_type, version):
        return None
    ids = table.column(join_key).to_numpy().astype(np.int64)
    names = [f.name for f in fv.features]
    values, texts = [], []
    for feature in fv.features:
        encoded, text = encode_values(table.column(feature.name), feature.dtype.to_value_type())
        values.append(encoded)
        texts.append(text)
    stamps = table.column(fv.batch_source.timestamp_field)
    distinct = pc.unique(stamps)
    batch = EncodedBatch(
        ids=ids,
        entity_keys=entity_keys(join_key, ids),
        features=names,
        values=values,
        texts=texts,
        timestamps=distinct.to_pylist(),
        ts_index=pc.index_in(stamps, value_set=distinct).to_numpy(),
    )
    verify_against_feast(table, fv, join_key, batch)
    return batch


def _sample_rows(table: pa.RecordBatch, fv: FeatureView) -> list[int]:
    """Rows worth checking: the first, the last and the first null of every feature."""
    rows = {0, table.num_rows - 1}
    for feature in fv.features:
        array = table.column(feature.name).to_numpy(zero_copy_only=False)
        if array.dtype.kind == "f" and np.isnan(array).any():
            rows.add(int(np.argmax(np.isnan(array))))
    return sorted(r for r in rows if r >= 0)


def verify_against_feast(
    table: pa.RecordBatch, fv: FeatureView, join_key: str, batch: EncodedBatch
) -> None:
    """Compare sample rows with Feast's own serializers; raise on any difference."""
    for row in _sample_rows(table, fv):
        key = EntityKeyProto(
            join_keys=[join_key], entity_values=[ValueProto(int64_val=int(batch.ids[row]))]
        )
        expected = [serialize_entity_key(key, KEY_SERIALIZATION_VERSION)]
        ours = [batch.entity_keys[row]]
        for i, feature in enumerate(fv.features):
            column = table.column(feature.name).slice(row, 1).to_numpy(zero_copy_only=False)
            proto = python_values_to_proto_values(column, feature.dtype.to_value_type())[0]
            expected += [proto.SerializeToString(), extract_text_and_num(proto, False)[0]]
            ours += [batch.values[i][row], batch.texts[i][row]]
        if ours != expected:
            raise OnlineFormatMismatchError(
                f"{fv.name} row {row}: encoded {ours!r}, Feast writes {expected!r}; "
                "the installed Feast changed its online format, update ml/feature_store/"
                "online_codec.py"
            )
