"""Training of the two candidate families on a training window: XGBoost and a torch MLP."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import xgboost as xgb
from sklearn.metrics import average_precision_score

from fraudops.contracts import FEATURE_COLUMNS
from ml.model import MLP, Scaler, ScoringModel

# Small on purpose: the search runs on 2 shared cores (docs/training.md).
XGB_GRID: dict[str, Sequence[object]] = {
    "max_depth": [3, 6],
    "learning_rate": [0.1, 0.3],
    "num_boost_round": [100],
}
MLP_PARAMS: dict[str, object] = {
    "hidden": [64, 32],
    "dropout": 0.1,
    "epochs": 6,
    "batch_size": 1024,
    "learning_rate": 2e-3,
}
THREADS = 2
# Where the long steps say how far they are (Dagster passes ``context.log.info``).
Progress = Callable[[str], None]
MONOTONE = "(" + ",".join("1" if c == "tx_amount" else "0" for c in FEATURE_COLUMNS) + ")"


def labels(frame: pd.DataFrame) -> np.ndarray:
    """The training label as XGBoost takes it."""
    return frame["is_fraud"].to_numpy(dtype="float32")


def booster_params(params: Mapping[str, object], seed: int, threads: int = THREADS) -> dict:
    """XGBoost's training parameters of a candidate: the search's ``params`` and the fixed ones."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "nthread": threads,
        "seed": seed,
        "max_depth": params["max_depth"],
        "learning_rate": params["learning_rate"],
        "min_child_weight": params.get("min_child_weight", 1.0),
        # Fine amount bins: with the default 256 the top bin mixes genuine amounts just
        # under 220 with the always-fraudulent ones above it.
        "max_bin": params.get("max_bin", 1024),
        # Domain prior: a larger amount, all else equal, never lowers the fraud score.
        "monotone_constraints": MONOTONE,
    }


def train_xgboost(train: pd.DataFrame, params: Mapping[str, object], seed: int) -> ScoringModel:
    """Fit the scaler and an XGBoost booster on the training rows."""
    scaler = Scaler.fit(train)
    booster = xgb.train(
        booster_params(params, seed),
        xgb.DMatrix(scaler.transform(train), label=labels(train)),
        num_boost_round=int(params["num_boost_round"]),
    )
    return ScoringModel("xgboost", scaler, booster, {**params, "seed": seed})


def grid(space: Mapping[str, Sequence[object]]) -> Iterator[dict[str, object]]:
    """Every combination of a parameter grid, in a stable order."""
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def search_xgboost(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    seed: int,
    space: Mapping[str, Sequence[object]] = XGB_GRID,
    progress: Progress | None = None,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Best parameters by validation average precision, and every trial's score."""
    trials = []
    combinations = list(grid(space))
    for i, params in enumerate(combinations, 1):
        model = train_xgboost(train, params, seed)
        ap = average_precision_score(validation["is_fraud"], model.predict_proba(validation))
        trials.append({**params, "validation_ap": float(ap)})
        if progress:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            progress(
                f"xgboost search: trial {i}/{len(combinations)} ({shown}) validation AP {ap:.4f}"
            )
    best = max(trials, key=lambda t: t["validation_ap"])
    return {k: best[k] for k in space}, trials


def train_mlp(
    train: pd.DataFrame,
    params: Mapping[str, object],
    seed: int,
    progress: Progress | None = None,
) -> ScoringModel:
    """Fit the scaler and a torch MLP (Adam, binary cross-entropy) on the training rows."""
    scaler = Scaler.fit(train)
    x = torch.from_numpy(scaler.transform(train))
    y = torch.from_numpy(labels(train))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    try:
        mlp = MLP(x.shape[1], tuple(params["hidden"]), float(params["dropout"]))
        optimizer = torch.optim.Adam(mlp.parameters(), lr=float(params["learning_rate"]))
        loss_fn = torch.nn.BCEWithLogitsLoss()
        batch = int(params["batch_size"])
        mlp.train()
        epochs = int(params["epochs"])
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start : start + batch]
                optimizer.zero_grad()
                loss = loss_fn(mlp(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            if progress:
                progress(f"torch: epoch {epoch}/{epochs}, training loss {total / len(x):.4f}")
    finally:
        torch.set_num_threads(previous_threads)
    return ScoringModel("torch", scaler, mlp, {**params, "seed": seed})
