"""The scoring core: request-time + online features, champion/challenger routing, decisions.

Plain Python (no BentoML): the service, the benchmarks and the tests call it the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudops.settings import Settings
from ml.features import FEATURE_COLUMNS, transaction_features
from serving.features import ENTITY_FEATURES, GuardedFeatures
from serving.models import CHALLENGER, CHAMPION, ModelSource
from serving.schemas import ScoreResult, Transaction


def decide(scores: np.ndarray, review: float, decline: float) -> np.ndarray:
    """approve below ``review``, decline at or above ``decline``, review in between."""
    return np.where(scores >= decline, "decline", np.where(scores >= review, "review", "approve"))


def canary_bucket(transaction_id: str) -> float:
    """A stable pseudo-random number in [0, 1) per transaction id (same id, same route)."""
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def model_inputs(
    timestamps: pd.Series, amounts: np.ndarray, entity_values: np.ndarray
) -> pd.DataFrame:
    """The 15 FEATURE_COLUMNS: request-time features (shared with training) + entity features."""
    request = transaction_features(timestamps, pd.Series(amounts, index=timestamps.index))
    columns = {c: request[c].to_numpy(dtype="float64") for c in request.columns}
    columns.update({f: entity_values[:, i] for i, f in enumerate(ENTITY_FEATURES)})
    return pd.DataFrame(columns)[FEATURE_COLUMNS]


@dataclass(frozen=True)
class Scored:
    """What one call produced: the answers, and the columns of its prediction-log rows."""

    results: list[ScoreResult]
    log_rows: dict[str, object]


class Scorer:
    """Scores transactions with the loaded models and the guarded feature lookup."""

    def __init__(self, settings: Settings, models: ModelSource, features: GuardedFeatures) -> None:
        self.settings = settings
        self.models = models
        self.features = features

    def _routes(self, ids: Sequence[str], has_challenger: bool) -> tuple[np.ndarray, bool]:
        """Which rows the challenger answers (canary), and whether it shadows every row."""
        mode = self.settings.serving_mode
        if not has_challenger or mode == "champion":
            return np.zeros(len(ids), dtype=bool), False
        if mode == "shadow":
            return np.zeros(len(ids), dtype=bool), True
        share = self.settings.serving_canary_share
        return np.array([canary_bucket(i) < share for i in ids], dtype=bool), False

    def score(
        self, transactions: Sequence[Transaction], started: float | Sequence[float] | None = None
    ) -> Scored:
        """Score validated transactions in input order; ``started`` is when each request began."""
        started = time.perf_counter() if started is None else started
        ids = [t.transaction_id for t in transactions]
        customers = np.array([t.customer_id for t in transactions], dtype="int64")
        terminals = np.array([t.terminal_id for t in transactions], dtype="int64")
        amounts = np.array([t.amount for t in transactions], dtype="float64")
        timestamps = pd.Series(pd.to_datetime([t.timestamp for t in transactions], utc=True))
        entity = self.features.fetch(customers.tolist(), terminals.tolist(), timestamps)
        inputs = model_inputs(timestamps, amounts, entity.values)

        champion = self.models.champion()
        challenger = self.models.get(CHALLENGER)
        canary, shadow = self._routes(ids, challenger is not None)
        champion_scores = champion.predict(inputs)
        challenger_scores = np.full(len(ids), np.nan)
        if shadow:
            challenger_scores = challenger.predict(inputs)
        elif canary.any():
            challenger_scores[canary] = challenger.predict(inputs[canary])
        scores = np.where(canary, challenger_scores, champion_scores)
        decisions = decide(
            scores, self.settings.serving_review_threshold, self.settings.serving_decline_threshold
        )
        versions = np.where(canary, challenger.version if challenger else "", champion.version)
        results = [
            ScoreResult(
                transaction_id=tid,
                score=float(score),
                decision=decision,
                model_version=str(version),
                features_as_of=as_of,
                degraded=bool(flag),
            )
            for tid, score, decision, version, as_of, flag in zip(
                ids, scores, decisions, versions, entity.as_of, entity.missing, strict=True
            )
        ]
        now = time.perf_counter()
        latency_ms = (now - np.asarray(started, dtype="float64")) * 1000.0
        log_rows = {
            "scored_at": pd.Timestamp(dt.datetime.now(dt.UTC)),
            "transaction_id": ids,
            "customer_id": customers,
            "terminal_id": terminals,
            "tx_datetime": timestamps,
            **{c: inputs[c].to_numpy() for c in FEATURE_COLUMNS},
            "features_as_of": entity.as_of,
            "degraded": entity.missing,
            "score": scores,
            "decision": decisions,
            "model_version": versions.astype(str),
            "served_by": np.where(canary, CHALLENGER, CHAMPION),
            "routing": self.settings.serving_mode,
            "champion_version": champion.version,
            "champion_score": champion_scores,
            "challenger_version": challenger.version if challenger else None,
            "challenger_score": challenger_scores,
            "latency_ms": np.broadcast_to(latency_ms, (len(ids),)),
            "batch_size": len(ids),
        }
        return Scored(results, log_rows)
