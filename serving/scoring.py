"""The scoring core: request-time + online features, champion/challenger routing, decisions.

Degraded rows (entity features filled because the store could not answer, or had no row for
an entity) are answered by the champion's fallback model when one is loaded (serving/models.py):
it was trained on request-time features only, with the entity features at their fill values,
and sees them that way here. Their ``model_version`` says ``fallback-<version>``; ``served_by``
stays the role the row was routed to, and the champion's (and challenger's) own scores are
still logged. Without a fallback, the routed model scores the filled row, as before.

Plain Python (no BentoML): the service, the benchmarks and the tests call it the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.definitions import request_time_features
from fraudops.contracts import CHALLENGER, CHAMPION, ENTITY_FEATURES, FEATURE_COLUMNS
from fraudops.settings import Settings
from serving.features import GuardedFeatures, fallback_values
from serving.models import LoadedModel, ModelSource, fallback_label
from serving.schemas import ScoreResult, Transaction

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Where the entity features sit among the model's inputs.
ENTITY_POSITIONS = [FEATURE_COLUMNS.index(f) for f in ENTITY_FEATURES]
MICROSECOND = dt.timedelta(microseconds=1)


def decide(scores: np.ndarray, review: float, decline: float) -> np.ndarray:
    """approve below ``review``, decline at or above ``decline``, review in between."""
    return np.where(scores >= decline, "decline", np.where(scores >= review, "review", "approve"))


def canary_bucket(transaction_id: int) -> float:
    """A stable pseudo-random number in [0, 1) per transaction id (same id, same route)."""
    digest = hashlib.blake2b(transaction_id.to_bytes(8, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def model_inputs(
    epoch_us: np.ndarray, amounts: np.ndarray, entity_values: np.ndarray
) -> np.ndarray:
    """The 15 FEATURE_COLUMNS as a float64 matrix: request-time (shared with training) + entity."""
    out = np.empty((len(amounts), len(FEATURE_COLUMNS)), dtype="float64")
    for name, values in request_time_features(epoch_us, amounts).items():
        out[:, FEATURE_COLUMNS.index(name)] = values
    out[:, ENTITY_POSITIONS] = entity_values
    return out


def epoch_microseconds(moments: Sequence[dt.datetime]) -> np.ndarray:
    """Timezone-aware datetimes as exact int64 microseconds since the epoch."""
    return np.fromiter(((m - EPOCH) // MICROSECOND for m in moments), "int64", len(moments))


def answer_degraded(
    fallback: LoadedModel,
    inputs: np.ndarray,
    degraded: np.ndarray,
    scores: np.ndarray,
    versions: np.ndarray,
) -> None:
    """Overwrite the degraded rows' scores and versions with the fallback model's answers."""
    rows = inputs[degraded]
    # As in its training: every entity feature at its fill value, even the half of a row
    # whose other entity the store did find.
    rows[:, ENTITY_POSITIONS] = fallback_values(len(rows))
    scores[degraded] = fallback.predict(rows)
    versions[degraded] = fallback_label(fallback.version)


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
        epoch_us = epoch_microseconds([t.timestamp for t in transactions])
        entity = self.features.fetch(customers, terminals, epoch_us.astype("datetime64[us]"))
        inputs = model_inputs(epoch_us, amounts, entity.values)

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
        versions = np.where(
            canary, challenger.version if challenger else "", champion.version
        ).astype(object)
        fallback = self.models.fallback()
        if fallback is not None and entity.missing.any():
            answer_degraded(fallback, inputs, entity.missing, scores, versions)
        decisions = decide(
            scores, self.settings.serving_review_threshold, self.settings.serving_decline_threshold
        )
        # Built without re-validation: every field comes typed from the lines above.
        results = [
            ScoreResult.model_construct(
                transaction_id=tid,
                score=score,
                decision=decision,
                model_version=version,
                features_as_of=as_of,
                degraded=flag,
            )
            for tid, score, decision, version, as_of, flag in zip(
                ids,
                scores.tolist(),
                decisions.tolist(),
                versions.astype(str).tolist(),
                entity.as_of,
                entity.missing.tolist(),
                strict=True,
            )
        ]
        now = time.perf_counter()
        latency_ms = (now - np.asarray(started, dtype="float64")) * 1000.0
        log_rows = {
            "scored_at": dt.datetime.now(dt.UTC),
            "transaction_id": ids,
            "customer_id": customers,
            "terminal_id": terminals,
            "tx_datetime": epoch_us.astype("datetime64[us]"),
            **{c: inputs[:, i] for i, c in enumerate(FEATURE_COLUMNS)},
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
