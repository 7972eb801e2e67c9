"""The request and response bodies of the scoring API (shared by the service, tests, clients)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

# Ids are int64 end to end (lakehouse, API, prediction log); anything larger names nothing.
MAX_ID = 2**63 - 1
# Hard ceiling of the schema; the service applies the (lower) configured one on top.
MAX_AMOUNT = 1e9

Decision = Literal["approve", "review", "decline"]


# ISO-8601 extended format with a timezone (Z or an offset); pydantic checks the ranges after.
# Checked on the raw value: pydantic alone also reads a numeric string as epoch seconds.
ISO_8601_WITH_ZONE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})"
)
TIMESTAMP_EXAMPLE = "2018-05-01T12:00:00Z"


def _iso_string(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value  # built in Python (JSON has no datetime type): only the timezone is checked
    if not isinstance(value, str) or ISO_8601_WITH_ZONE.fullmatch(value) is None:
        raise PydanticCustomError(
            "timestamp_format",
            "timestamp must be an ISO-8601 string with a timezone, e.g. {example}",
            {"example": TIMESTAMP_EXAMPLE},
        )
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp must carry a timezone, e.g. {TIMESTAMP_EXAMPLE}")
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
    timestamp: Annotated[
        dt.datetime,
        BeforeValidator(_iso_string),
        AfterValidator(_aware),
        # Not strict here: the string, checked above, is parsed by pydantic (strict refuses it).
        Field(
            strict=False,
            description="ISO-8601 date and time with a timezone (Z or an offset such as +02:00)",
            examples=[TIMESTAMP_EXAMPLE],
        ),
    ]


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
