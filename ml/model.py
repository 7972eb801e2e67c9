"""The scoring model: feature scaling fitted on the training window plus a classifier.

The same object scores in evaluation, in the MLflow pyfunc wrapper and so in serving: its
``predict_proba`` takes a DataFrame with the 15 FEATURE_COLUMNS and returns fraud
probabilities. It saves to and loads from a folder of portable files (JSON, XGBoost's JSON
model, a torch state dict), never a pickle of live objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import xgboost as xgb

from fraudops.contracts import FEATURE_COLUMNS, is_count, is_flag

Kind = Literal["xgboost", "torch"]

# The dtypes of the model signature: counts and flags are integers (any width converts up
# safely to int64), the rest float64. MLflow refuses int -> float, so this is fixed here.
INPUT_DTYPES = {c: "int64" if is_count(c) or is_flag(c) else "float64" for c in FEATURE_COLUMNS}


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The 15 FEATURE_COLUMNS of ``frame`` in order, cast to the model signature's dtypes."""
    return frame[FEATURE_COLUMNS].astype(INPUT_DTYPES)


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The FEATURE_COLUMNS of ``frame`` as a float64 matrix, in order."""
    # Selecting columns costs ~0.3 ms a call: skip it when the frame is already in order.
    ordered = list(frame.columns) == FEATURE_COLUMNS
    return (frame if ordered else frame[FEATURE_COLUMNS]).to_numpy(dtype="float64")


@dataclass(frozen=True)
class Scaler:
    """Standardisation of each feature with the training window's mean and deviation."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Scaler:
        """Fit on the training rows only (a constant feature keeps scale 1)."""
        values = frame[FEATURE_COLUMNS].to_numpy(dtype="float64")
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Scaled float32 feature matrix in FEATURE_COLUMNS order."""
        return self.scale_matrix(feature_matrix(frame))

    def scale_matrix(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 copy of a float64 matrix already in FEATURE_COLUMNS order."""
        return ((values - self.mean) / self.scale).astype("float32")

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Scaler:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["mean"]), np.asarray(data["scale"]))


class MLP(torch.nn.Module):
    """A small feed-forward network returning one fraud logit per row."""

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = n_inputs
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = size
        layers.append(torch.nn.Linear(width, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (rows,)."""
        return self.net(x).squeeze(-1)


class ScoringModel:
    """Scaler plus an XGBoost booster or a torch MLP, scoring DataFrames of FEATURE_COLUMNS."""

    def __init__(
        self,
        kind: Kind,
        scaler: Scaler,
        estimator: xgb.Booster | MLP,
        config: dict[str, object] | None = None,
    ) -> None:
        self.kind = kind
        self.scaler = scaler
        self.estimator = estimator
        self.config = config or {}
        if isinstance(estimator, MLP):
            estimator.eval()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Fraud probability of each row, a float64 array in [0, 1]."""
        missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"model input lacks feature columns {missing}")
        return self.predict_matrix(feature_matrix(frame))

    def predict_matrix(self, values: np.ndarray) -> np.ndarray:
        """Fraud probability of each row of a float64 matrix in FEATURE_COLUMNS order."""
        if values.ndim != 2 or values.shape[1] != len(FEATURE_COLUMNS):
            raise ValueError(
                f"model input must be a matrix of {len(FEATURE_COLUMNS)} feature columns, "
                f"got shape {values.shape}"
            )
        x = self.scaler.scale_matrix(values)
        if isinstance(self.estimator, xgb.Booster):
            return np.asarray(self.estimator.inplace_predict(x), dtype="float64")
        with torch.inference_mode():
            logits = self.estimator(torch.from_numpy(x))
        return torch.sigmoid(logits).numpy().astype("float64")

    def save(self, folder: Path) -> Path:
        """Write the model as portable files into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "features": FEATURE_COLUMNS, "config": self.config}
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        (folder / "scaler.json").write_text(json.dumps(self.scaler.to_dict()))
        if isinstance(self.estimator, xgb.Booster):
            self.estimator.save_model(folder / "booster.json")
        else:
            torch.save(self.estimator.state_dict(), folder / "mlp.pt")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ScoringModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((folder / "model.json").read_text())
        if meta["features"] != FEATURE_COLUMNS:
            raise ValueError(
                f"model at {folder} was trained on other features {meta['features']}; "
                "retrain it with the current features.definitions.FEATURE_COLUMNS"
            )
        scaler = Scaler.from_dict(json.loads((folder / "scaler.json").read_text()))
        config = meta["config"]
        if meta["kind"] == "xgboost":
            booster = xgb.Booster()
            booster.load_model(folder / "booster.json")
            booster.set_param({"nthread": 1})  # one row at a time: threads only add overhead
            return cls("xgboost", scaler, booster, config)
        mlp = MLP(len(FEATURE_COLUMNS), tuple(config["hidden"]), float(config["dropout"]))
        mlp.load_state_dict(torch.load(folder / "mlp.pt", weights_only=True))
        return cls("torch", scaler, mlp, config)


def folder_size(folder: Path) -> int:
    """Total size in bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
