"""The point-in-time training set: labelled transactions joined with Feast's offline store.

Rows: every labelled transaction of ``marts/labelled_transactions`` whose label is known, i.e.
``label_available_at`` is not after the newest fraud report (the newest ``label_available_at``
of a fraud). Features: the ``fraud_model_v1`` feature service through
``get_historical_features`` (a row gets the entity row valid at its time, or nothing). Fill
rule (as online, ``online.py``): missing or expired entity features become 0 and the row is
flagged ``features_missing = 1``. Feast's file store drops an entity row whose entity has rows
but none within the TTL, so each view is retrieved on its own and re-joined to the input by
``transaction_id``: no transaction is lost, and none is duplicated (docs/features.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from feast import FeatureStore

from features.definitions import transaction_features
from features.repo.feature_services import FRAUD_MODEL_V1
from features.store.materialize import mart_table
from fraudops.catalog import TRAINING_SET
from fraudops.contracts import (
    ENTITY_FEATURES,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    LABEL_COLUMNS,
    MISSING_FLAG,
    TRAINING_COLUMNS,
    TRANSACTION_FEATURES,
    feature_dtype,
    is_count,
    is_flag,
)
from fraudops.settings import Settings

# Days of transactions per point-in-time join: the file store joins every entity row with all
# its source rows in range, so bounded chunks keep memory flat at the reference scale.
CHUNK_DAYS = 7
# The join of the whole history takes about a minute at the reference scale: a progress line
# at most this often (and after the last chunk).
PROGRESS_EVERY_S = 10.0

Progress = Callable[[str], None]


def labelled_entities(settings: Settings) -> pd.DataFrame:
    """Labelled transactions whose label is known by the newest fraud report."""
    columns = [*KEY_COLUMNS, "tx_amount", *LABEL_COLUMNS, "label_available_at"]
    frame = mart_table(settings, "labelled_transactions").to_pandas(columns=columns)
    frauds = frame.loc[frame["is_fraud"] == 1, "label_available_at"]
    if frauds.empty:
        raise ValueError(
            "marts/labelled_transactions has no fraud yet, so no label is known: ingest more "
            "fraud reports (labels arrive after the label delay) before building a training set"
        )
    return frame[frame["label_available_at"] <= frauds.max()].drop(columns="label_available_at")


def _retrieve(store: FeatureStore, request: pd.DataFrame, refs: list[str]) -> pd.DataFrame:
    """``refs`` for ``request``, one row per transaction_id (NaN where Feast returned none)."""
    names = [ref.split(":", 1)[1] for ref in refs]
    out = store.get_historical_features(entity_df=request, features=refs).to_df()
    # The entity frame's tx_amount and the on-demand view's tx_amount are the same column.
    out = out.loc[:, ~out.columns.duplicated(keep="last")]
    if out["transaction_id"].duplicated().any():
        raise RuntimeError(
            "get_historical_features returned a transaction twice: the entity views must hold "
            "one row per entity and feature_timestamp (check the dbt marts' unique tests)"
        )
    merged = request[["transaction_id"]].merge(out[["transaction_id", *names]], how="left")
    return merged[names].set_axis(request.index)


def _refs_by_view(store: FeatureStore) -> list[list[str]]:
    """The service's feature refs grouped per entity view; on-demand refs join the first group
    (Feast's file store cannot retrieve an on-demand view on its own)."""
    service = store.get_feature_service(FRAUD_MODEL_V1)
    entity_views = {fv.name for fv in store.list_feature_views()}
    groups: list[list[str]] = []
    on_demand: list[str] = []
    for view in service.feature_view_projections:
        refs = [f"{view.name}:{f.name}" for f in view.features]
        if view.name in entity_views:
            groups.append(refs)
        else:
            on_demand += refs
    if not groups:
        raise ValueError(f"feature service {FRAUD_MODEL_V1} has no entity feature view")
    groups[0] = on_demand + groups[0]
    return groups


def historical_features(
    store: FeatureStore, entities: pd.DataFrame, progress: Progress | None = None
) -> pd.DataFrame:
    """``fraud_model_v1`` for ``entities`` (transaction_id, customer_id, terminal_id,
    tx_datetime, tx_amount), point in time, one output row per input row (NaN when missing);
    ``progress`` gets a line every ``PROGRESS_EVERY_S`` seconds and after the last chunk.

    One retrieval per view of the service: Feast's file store drops an entity row from a join
    when its entity has rows but none within the TTL, which would also blank the other views.
    """
    refs = _refs_by_view(store)
    request = entities[["transaction_id", "customer_id", "terminal_id", "tx_datetime", "tx_amount"]]
    request = request.assign(event_timestamp=request["tx_datetime"]).reset_index(drop=True)
    days = request["tx_datetime"].dt.floor("D")
    step = pd.Timedelta(days=CHUNK_DAYS)
    starts = pd.date_range(days.min(), days.max(), freq=step) if len(days) else []
    parts = []
    began = reported = time.monotonic()
    done = 0
    for index, start in enumerate(starts, start=1):
        chunk = request[(days >= start) & (days < start + step)]
        if chunk.empty:
            continue
        parts.append(pd.concat([_retrieve(store, chunk, r) for r in refs], axis=1))
        done += len(chunk)
        now = time.monotonic()
        if progress and (now - reported >= PROGRESS_EVERY_S or index == len(starts)):
            reported = now
            progress(
                f"point-in-time join: {done:,} of {len(request):,} transactions "
                f"(up to {(start + step - pd.Timedelta(days=1)).date()}, chunk {index} of "
                f"{len(starts)}), {now - began:.0f} s"
            )
    if not parts:
        raise ValueError("no entity rows to retrieve features for")
    result = pd.concat(parts).sort_index()[FEATURE_COLUMNS].set_axis(entities.index)
    # Rows Feast left empty still get their request-time features, from the shared function.
    shared = transaction_features(entities["tx_datetime"], entities["tx_amount"])
    for name in TRANSACTION_FEATURES:
        result[name] = result[name].fillna(shared[name]).astype(shared[name].dtype)
    return result


def fill_missing(features: pd.DataFrame) -> pd.DataFrame:
    """Apply the fill rule: missing entity features -> 0, flagged in ``features_missing``."""
    out = features.copy()
    out[MISSING_FLAG] = out[ENTITY_FEATURES].isna().any(axis=1).astype("int8")
    for name in ENTITY_FEATURES:
        out[name] = out[name].astype("float64").fillna(0.0).astype(feature_dtype(name))
    return out


def build_training_set(
    store: FeatureStore,
    settings: Settings,
    recent_days: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The training set of the contract (``features/training_set``), sorted by time and id.

    With ``recent_days``, only the labelled transactions of that many newest days; ``progress``
    receives a line on the point-in-time join's progress every few seconds.
    """
    entities = labelled_entities(settings)
    if recent_days is not None:
        days = entities["tx_datetime"].dt.floor("D")
        entities = entities[days > days.max() - pd.Timedelta(days=recent_days)]
    features = fill_missing(historical_features(store, entities, progress))
    # tx_amount comes from the mart, the two flags from the on-demand view (shared function).
    frame = entities.join(features[[c for c in features if c not in entities]])
    frame["tx_date"] = frame["tx_datetime"].dt.date
    frame = frame[TRAINING_COLUMNS].sort_values(["tx_datetime", "transaction_id"])
    return frame.reset_index(drop=True)


def training_schema() -> pa.Schema:
    """Arrow schema of the training set Delta table."""
    types = {"tx_datetime": pa.timestamp("us", tz="UTC"), "tx_date": pa.date32()}
    types |= {c: pa.int8() for c in [MISSING_FLAG, *LABEL_COLUMNS]}
    fields = []
    for name in TRAINING_COLUMNS:
        if is_flag(name):
            default = pa.int8()
        elif name in KEY_COLUMNS or is_count(name):
            default = pa.int64()
        else:
            default = pa.float64()
        fields.append(pa.field(name, types.get(name, default)))
    return pa.schema(fields)


def write_training_set(settings: Settings, frame: pd.DataFrame) -> int:
    """Replace ``features/training_set`` with ``frame`` (partitioned by tx_date); its version."""
    uri = TRAINING_SET.uri(settings)
    table = pa.Table.from_pandas(
        frame[TRAINING_COLUMNS], schema=training_schema(), preserve_index=False
    )
    options = settings.storage_options or None
    write_deltalake(
        uri,
        table,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=["tx_date"],
        storage_options=options,
    )
    return DeltaTable(uri, storage_options=options).version()
