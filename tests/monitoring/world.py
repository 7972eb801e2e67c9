"""A small but real monitored platform: lakehouse, champion, scoring service core, prediction log.

The lakehouse is the simulator ingested for 60 days (300 customers: a few hundred transactions a
day, enough for a drift score to mean something); the champion is trained, evaluated and
registered by the real retraining steps on the labelled days up to ``TRAINED_UNTIL``. Traffic
goes through the real request schema (``serving.schemas.Transaction``: a null amount is a 4xx
and never logged), the real scorer (``serving.scoring.Scorer`` with the registry's champion and
challenger in shadow mode) and the real prediction log writer. Entity features come from the
reference definitions (features/definitions.py) over the history the world has seen, served
by a small in-memory feature source with the online store's interface.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake
from pydantic import ValidationError

from features.definitions import customer_features, terminal_features
from fraudops.catalog import (
    RAW_CUSTOMERS,
    RAW_FRAUD_REPORTS,
    RAW_TERMINALS,
    RAW_TRANSACTIONS,
    TRAINING_SET,
)
from fraudops.contracts import CHALLENGER, CUSTOMER_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings, SimDrift, get_settings
from lakehouse.delta import read_table
from lakehouse.simulator import DriftScenario, Simulator, SimulatorConfig
from ml import pipeline, registry, tracking
from ml.dataset import load_training_set
from ml.metrics import classification_metrics
from ml.reference_set import build_reference_training_set
from ml.train import train_xgboost
from serving.features import GuardedFeatures, OnlineRows
from serving.models import ModelSource
from serving.prediction_log import PredictionLog
from serving.schemas import Transaction
from serving.scoring import Scorer

START = dt.date(2018, 4, 1)


def day(index: int) -> dt.date:
    """The simulation day ``index`` (0-based)."""
    return START + dt.timedelta(days=index)


SCALE = {"sim_customers": 300, "sim_terminals": 600, "sim_days": 73, "sim_start_date": START}
PROTOCOL = {"train_days": 10, "test_days": 4, "known_card_memory_days": 0}
# The 30-day terminal windows look back past the 7-day label delay: from day 37 on every
# feature window is full, as in a long-running platform.
FIRST_TRAINING_DAY = day(37)
# The champion was trained on day 68: its newest labelled day is day 61 (training window
# 41..50, test window 58..61).
TRAINED_UNTIL = day(61)
STABLE_DAYS = [day(i) for i in range(51, 61)]
DRIFT_DAYS = [day(62), day(63)]
# What the source system did to the ingested days: card testing, then a broken amount field.
NEW_FRAUD = DriftScenario("new_fraud_pattern", day(62), day(63), intensity=20.0)
NULL_AMOUNT = DriftScenario("broken_field", day(64), day(65), intensity=0.2)
NULL_DAYS = [day(64), day(65)]
# Drifts of days that are only served, never ingested (they replace days 62-63 of the source).
SPENDING = DriftScenario("spending_shift", day(62), None, intensity=1.0)
CENTS = DriftScenario("broken_field", day(62), None, variant="amount_in_cents")
XGB_PARAMS = {"max_depth": 3, "learning_rate": 0.3, "num_boost_round": 20, "max_bin": 256}


def world_settings(home, **overrides) -> Settings:
    """The world's settings in ``home``: shadow traffic, so the challenger scores every row."""
    drifts = [
        SimDrift(**{k: getattr(d, k) for k in SimDrift.model_fields})
        for d in (NEW_FRAUD, NULL_AMOUNT)
    ]
    return get_settings(
        home=home, sim_drifts=drifts, serving_mode="shadow", **SCALE, **PROTOCOL, **overrides
    )


def train_champion(settings: Settings) -> str:
    """Train an XGBoost model on the protocol's training window, log and register it as the
    retraining job does (run params, test metrics, pyfunc); make it champion and challenger."""
    frame = build_reference_training_set(settings)
    frame = frame[(frame["tx_date"] >= FIRST_TRAINING_DAY) & (frame["tx_date"] <= TRAINED_UNTIL)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_deltalake(TRAINING_SET.uri(settings), table, mode="overwrite", partition_by=["tx_date"])
    data = load_training_set(settings)
    splits = pipeline.make_splits(data.frame, settings)
    model = train_xgboost(splits.train, XGB_PARAMS, settings.train_seed)
    client = tracking.configure(settings)
    with mlflow.start_run(run_name="xgboost-candidate") as run:
        mlflow.log_params({"data_version": data.version, **splits.test.as_params("window_")})
        with tempfile.TemporaryDirectory() as tmp:
            model_uri = tracking.log_scoring_model(model, splits.train, Path(tmp))
        metrics = classification_metrics(splits.test_frame, model.predict_proba(splits.test_frame))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    client.create_registered_model(settings.model_name)
    version = str(
        client.create_model_version(settings.model_name, model_uri, run.info.run_id).version
    )
    registry.move_champion(client, settings.model_name, version, "monitoring tests")
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    return version


def _ns(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


class ReferenceFeatureSource:
    """Entity features valid at the start of each transaction's day, like the online store."""

    def __init__(self, customers: pd.DataFrame, terminals: pd.DataFrame) -> None:
        self.customers = customers.set_index(["customer_id", "feature_timestamp"])[
            CUSTOMER_FEATURES
        ]
        self.terminals = terminals.set_index(["terminal_id", "feature_timestamp"])[
            TERMINAL_FEATURES
        ]

    def _rows(self, table: pd.DataFrame, ids, as_of) -> tuple[np.ndarray, np.ndarray]:
        index = pd.MultiIndex.from_arrays([np.asarray(ids, dtype="int64"), as_of])
        found = table.reindex(index).to_numpy(dtype="float64")
        seconds = as_of.astype("int64") / 1e9
        return found, np.where(np.isnan(found).any(axis=1), np.nan, seconds)

    def lookup(self, customer_ids, terminal_ids, when) -> OnlineRows:
        """The rows of the features as of midnight of each transaction's day."""
        as_of = (
            pd.DatetimeIndex(np.asarray(when, dtype="datetime64[us]")).floor("D").tz_localize("UTC")
        )
        as_of = as_of.astype("datetime64[ns, UTC]")
        customers, customer_ts = self._rows(self.customers, customer_ids, as_of)
        terminals, terminal_ts = self._rows(self.terminals, terminal_ids, as_of)
        values = np.hstack([customers, terminals])
        return OnlineRows(values, np.isnan(values).any(axis=1), customer_ts, terminal_ts)

    def ping(self) -> None:
        """Always up."""


@dataclass(frozen=True)
class Served:
    """What one day of traffic did: answered rows, and requests the schema refused."""

    day: dt.date
    answered: int
    refused: int


def _payloads(transactions: pa.Table) -> tuple[list[Transaction], int]:
    accepted, refused = [], 0
    for row in transactions.to_pylist():
        try:
            accepted.append(
                Transaction.model_validate(
                    {
                        "transaction_id": row["transaction_id"],
                        "customer_id": row["customer_id"],
                        "terminal_id": row["terminal_id"],
                        "amount": row["tx_amount"],
                        "timestamp": row["tx_datetime"],
                    }
                )
            )
        except ValidationError:
            refused += 1
    return accepted, refused


def serve(
    settings: Settings, drifts: tuple[DriftScenario, ...], days: list[dt.date]
) -> list[Served]:
    """Send ``days`` of the source (with ``drifts``) to the scorer; log every answer.

    The features of day D come from the ingested history before the first served day and the
    served days before D (their valid rows, as ingestion would keep them).
    """
    config = SimulatorConfig.from_settings(settings, drifts=drifts)
    simulated = {d: Simulator(config).simulate_day(d) for d in days}
    raw = read_table(RAW_TRANSACTIONS.uri(settings)).to_pandas()
    history = raw[raw["tx_date"] < min(days)][
        ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"]
    ]
    served = [s.transactions.to_pandas() for s in simulated.values()]
    tx = pd.concat([history, *served], ignore_index=True).dropna(subset=["tx_amount"])
    tx["tx_datetime"] = _ns(tx["tx_datetime"])
    reports = read_table(RAW_FRAUD_REPORTS.uri(settings)).to_pandas()
    reports["reported_at"] = _ns(reports["reported_at"])
    as_of = [pd.Timestamp(d, tz="UTC") for d in days]
    customers = read_table(RAW_CUSTOMERS.uri(settings), ["customer_id"]).to_pandas()
    terminals = read_table(RAW_TERMINALS.uri(settings), ["terminal_id"]).to_pandas()
    cf = customer_features(tx, customers["customer_id"], as_of)
    tf = terminal_features(tx, reports, terminals["terminal_id"], as_of, settings.label_delay_days)
    cf["feature_timestamp"] = _ns(cf["feature_timestamp"])
    tf["feature_timestamp"] = _ns(tf["feature_timestamp"])

    models = ModelSource(settings)
    models.refresh()
    features = GuardedFeatures(ReferenceFeatureSource(cf, tf), timeout_s=10.0, retry_s=1.0)
    scorer = Scorer(settings, models, features)
    log = PredictionLog(settings.prediction_log_uri, batch_rows=1_000_000, flush_s=3_600.0)
    results = []
    try:
        for d, sim in simulated.items():
            accepted, refused = _payloads(sim.transactions)
            for start in range(0, len(accepted), settings.serving_max_batch):
                log.append(
                    scorer.score(accepted[start : start + settings.serving_max_batch]).log_rows
                )
            results.append(Served(d, len(accepted), refused))
    finally:
        log.close()
    return results
