"""ML test fixtures: a training set built from the tiny lakehouse and tiny protocol settings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from fraudops.catalog import TRAINING_SET
from fraudops.settings import Settings, get_settings
from ml.model import ScoringModel
from ml.reference_set import build_reference_training_set
from ml.split import protocol_splits, train_test
from ml.train import train_xgboost

# Windows that fit the tiny simulation's ~37 labelled days; floors low enough for 60 customers.
# Nearly every tiny customer is compromised at some point: the 14-day known-card memory would
# leave ~90 test rows, too few to rank, so these tests keep every card (test_split covers it).
TINY_PROTOCOL = {
    "train_days": 12,
    "test_days": 7,
    "known_card_memory_days": 0,
    "promotion_min_ap": 0.3,
    "promotion_min_roc_auc": 0.6,
    "promotion_max_p99_ms": 1_000.0,
}
XGB_SPACE = {"max_depth": [2, 4], "learning_rate": [0.3], "num_boost_round": [30]}
PARAMS = {"max_depth": 4, "learning_rate": 0.3, "num_boost_round": 30}
MLP_SMALL = {"hidden": [16], "dropout": 0.0, "epochs": 5, "batch_size": 64, "learning_rate": 3e-3}


@pytest.fixture(scope="session")
def tiny_training_frame(tiny_lakehouse) -> pd.DataFrame:
    """The contract training frame of the tiny lakehouse (read-only)."""
    return build_reference_training_set(tiny_lakehouse.settings)


def write_training_set(settings: Settings, frame: pd.DataFrame) -> int:
    """Write ``frame`` as the training set Delta table of ``settings``; return its version."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_deltalake(TRAINING_SET.uri(settings), table, mode="overwrite", partition_by=["tx_date"])
    return DeltaTable(TRAINING_SET.uri(settings)).version()


def make_ml_settings(home: Path, base: Settings, frame: pd.DataFrame, **overrides) -> Settings:
    """Tiny-protocol settings in ``home`` with ``frame`` written as the training set."""
    settings = get_settings(
        home=home,
        sim_customers=base.sim_customers,
        sim_terminals=base.sim_terminals,
        sim_days=base.sim_days,
        **{**TINY_PROTOCOL, **overrides},
    )
    write_training_set(settings, frame)
    return settings


@pytest.fixture
def ml_settings(tmp_path, tiny_lakehouse, tiny_training_frame) -> Settings:
    """Tiny-protocol settings in a fresh home with the training set written as Delta."""
    return make_ml_settings(tmp_path / "var", tiny_lakehouse.settings, tiny_training_frame)


@pytest.fixture(scope="module")
def windows(tiny_training_frame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test rows of the tiny protocol's test split."""
    settings = get_settings(**TINY_PROTOCOL)
    _, split = protocol_splits(tiny_training_frame, settings)
    return train_test(
        tiny_training_frame, split, settings.label_delay_days, settings.known_card_memory_days
    )


@pytest.fixture(scope="module")
def xgb_model(windows) -> ScoringModel:
    """An XGBoost model trained on the tiny training window."""
    return train_xgboost(windows[0], PARAMS, seed=1)
