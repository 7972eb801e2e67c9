"""Batch scoring: one day's transactions scored by the champion into a Delta table.

Entity features come from the dbt marts (the offline twin of the online store: the same rows
Feast materializes), taken as of the start of the scored day, exactly as online scoring would
have seen them. Missing entity rows get the documented fallback and ``features_missing = 1``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudops.catalog import BATCH_SCORES, RAW_TRANSACTIONS
from fraudops.contracts import CUSTOMER_FEATURES, ENTITY_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings
from lakehouse.delta import read_table, replace_partitions
from serving.features import fallback_values
from serving.models import LoadedModel, ModelSource
from serving.scoring import decide, model_inputs

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("tx_datetime", _TS),
        ("customer_id", pa.int64()),
        ("terminal_id", pa.int64()),
        ("tx_amount", pa.float64()),
        ("score", pa.float64()),
        ("decision", pa.string()),
        ("model_version", pa.string()),
        ("features_missing", pa.int8()),
        ("scored_at", _TS),
        ("tx_date", pa.date32()),
    ]
)


def _features(settings: Settings, name: str, key: str, columns: list[str], day: dt.date):
    table = read_table(
        settings.table_uri("marts", name),
        columns=[key, *columns],
        filters=[("feature_date", "=", day)],
        storage_options=settings.storage_options,
    )
    return table.to_pandas()


def score_day(settings: Settings, day: dt.date, model: LoadedModel) -> pa.Table:
    """Score every transaction of ``day`` with ``model``."""
    tx = read_table(
        RAW_TRANSACTIONS.uri(settings),
        columns=["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"],
        filters=[("tx_date", "=", day)],
        storage_options=settings.storage_options,
    ).to_pandas()
    customers = _features(settings, "customer_features", "customer_id", CUSTOMER_FEATURES, day)
    terminals = _features(settings, "terminal_features", "terminal_id", TERMINAL_FEATURES, day)
    frame = tx.merge(customers, on="customer_id", how="left").merge(
        terminals, on="terminal_id", how="left"
    )
    values = frame[ENTITY_FEATURES].to_numpy(dtype="float64")
    missing = np.isnan(values).any(axis=1)
    values = np.where(np.isnan(values), fallback_values(len(frame)), values)
    timestamps = pd.to_datetime(frame["tx_datetime"], utc=True)
    epoch_us = timestamps.dt.tz_localize(None).to_numpy("datetime64[us]").astype("int64")
    inputs = model_inputs(epoch_us, frame["tx_amount"].to_numpy(), values)
    scores = model.predict(inputs) if len(frame) else np.array([], dtype="float64")
    decisions = decide(
        scores, settings.serving_review_threshold, settings.serving_decline_threshold
    )
    out = pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"].astype("int64"),
            "tx_datetime": timestamps,
            "customer_id": frame["customer_id"].astype("int64"),
            "terminal_id": frame["terminal_id"].astype("int64"),
            "tx_amount": frame["tx_amount"].astype("float64"),
            "score": scores,
            "decision": decisions.astype(str),
            "model_version": model.version,
            "features_missing": missing.astype("int8"),
            "scored_at": pd.Timestamp(dt.datetime.now(dt.UTC)),
            "tx_date": day,
        }
    )
    return pa.Table.from_pandas(out, schema=SCHEMA, preserve_index=False)


def write_batch_scores(settings: Settings, days: list[dt.date]) -> dict[str, object]:
    """Score ``days`` with the current champion and replace their partitions in one commit."""
    models = ModelSource(settings)
    models.refresh()
    champion = models.champion()
    table = pa.concat_tables([score_day(settings, day, champion) for day in days])
    uri = BATCH_SCORES.uri(settings)
    version = replace_partitions(uri, table, "tx_date", days, settings.storage_options)
    missing = int(np.asarray(table.column("features_missing")).sum())
    return {
        "rows": table.num_rows,
        "features_missing": missing,
        "model_version": champion.version,
        "table_version": version,
        "uri": uri,
    }
