"""The request and response bodies of the scoring API (shared by the service, tests, clients)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Ids are int64 end to end (lakehouse, API, prediction log); anything larger names nothing.
MAX_ID = 2**63 - 1
# Hard ceiling of the schema; the service applies the (lower) configured one on top.
MAX_AMOUNT = 1e9

Decision = Literal["approve", "review", "decline"]


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone, e.g. 2018-05-01T12:00:00Z")
    return value.astimezone(dt.UTC)


class _Strict(BaseModel):
    # Unknown fields are rejected, and strings are never coerced into numbers or back.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Transaction(_Strict):
    """One card transaction to score."""

    transaction_id: Annotated[int, Field(ge=0, le=MAX_ID)]
    customer_id: Annotated[int, Field(gt=0, le=MAX_ID)]
    terminal_id: Annotated[int, Field(gt=0, le=MAX_ID)]
    amount: Annotated[float, Field(ge=0.0, le=MAX_AMOUNT, allow_inf_nan=False)]
    timestamp: Annotated[dt.datetime, AfterValidator(_aware)]


class ScoreRequest(_Strict):
    """Body of ``POST /v1/score``."""

    transaction: Transaction


class BatchScoreRequest(_Strict):
    """Body of ``POST /v1/score/batch`` (the size limit is a setting, checked by the service)."""

    transactions: Annotated[list[Transaction], Field(min_length=1)]


class ScoreResult(BaseModel):
    """The answer for one transaction."""

    transaction_id: int
    score: float
    decision: Decision
    model_version: str
    features_as_of: dt.datetime | None
    degraded: bool


class BatchScoreResult(BaseModel):
    """The answers of a batch, in input order."""

    results: list[ScoreResult]
