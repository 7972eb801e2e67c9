"""The training set: its column contract, loading it from Delta, and its fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fraudops.catalog import TRAINING_SET
from fraudops.contracts import FEATURE_COLUMNS, TRAINING_COLUMNS
from fraudops.settings import Settings


@dataclass(frozen=True)
class TrainingData:
    """A training frame with where it came from: table URI, Delta version and content hash."""

    frame: pd.DataFrame
    uri: str
    version: int
    digest: str

    @property
    def name(self) -> str:
        """Dataset name as logged to MLflow (table name and version)."""
        return f"{self.uri.rstrip('/').rsplit('/', 1)[-1]}@v{self.version}"


def validate_training_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the contract columns are present and return the frame sorted by time and id."""
    missing = [c for c in TRAINING_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"training set lacks columns {missing}; rebuild it per the data contract "
            "(fraudops.contracts.TRAINING_COLUMNS): materialize features/training_set"
        )
    if frame.empty:
        raise ValueError("training set is empty; materialize features/training_set first")
    if frame[FEATURE_COLUMNS].isna().any().any():
        raise ValueError(
            "training set has missing feature values; the feature pipeline must fill them "
            "explicitly and mark the rows with features_missing"
        )
    frame = frame.copy()
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"], utc=True)
    frame["tx_date"] = frame["tx_datetime"].dt.date
    return frame.sort_values(["tx_datetime", "transaction_id"], ignore_index=True)


def class_balance(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows and share of each label, frauds also by simulated scenario (where known)."""
    total = max(len(frame), 1)
    parts = [("genuine", frame["is_fraud"] == 0), ("fraud", frame["is_fraud"] == 1)]
    if "fraud_scenario" in frame:
        frauds = frame["is_fraud"] == 1
        parts += [
            (f"fraud, scenario {int(s)}", frauds & (frame["fraud_scenario"] == s))
            for s in sorted(frame.loc[frauds, "fraud_scenario"].unique())
        ]
    rows = [(name, int(mask.sum()), float(mask.sum()) / total) for name, mask in parts]
    return pd.DataFrame(rows, columns=["class", "rows", "share"])


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of the contract columns' values, independent of row order."""
    ordered = frame[TRAINING_COLUMNS].sort_values("transaction_id", ignore_index=True)
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def load_training_set(settings: Settings, version: int | None = None) -> TrainingData:
    """Read the training set Delta table (latest or a given version) and fingerprint it."""
    uri = TRAINING_SET.uri(settings)
    try:
        table = DeltaTable(uri, version=version, storage_options=settings.storage_options or None)
    except TableNotFoundError as exc:
        raise FileNotFoundError(
            f"no training set at {uri}; materialize the asset features/training_set first"
        ) from exc
    frame = validate_training_frame(table.to_pandas(columns=TRAINING_COLUMNS))
    return TrainingData(frame=frame, uri=uri, version=table.version(), digest=content_hash(frame))
