"""The BentoML scoring service: ``bentoml serve serving.service:FraudScoring``.

Routes: ``POST /v1/score``, ``POST /v1/score/batch``, ``POST /v1/admin/reload``; BentoML adds
``GET /healthz`` and ``/metrics``; ``GET /readyz`` answers :meth:`FraudScoring.readiness` as
JSON (serving/readiness.py); ``GET /docs.json`` is the OpenAPI document (serving/openapi.py).
The HTTP edge (deadlines, header limits, in-flight caps, rate limit) is the worker's HTTP
protocol (serving/http_protocol.py); API keys, body type and size are checked by
serving/guard.py.

An answer goes out only once its prediction-log rows are in the journal (serving/journal.py,
written and fsynced once per micro-batch on the event loop).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import bentoml
from pydantic import ValidationError
from starlette.responses import JSONResponse

from fraudops.contracts import CHAMPION
from fraudops.settings import get_settings
from serving.batcher import MicroBatcher
from serving.edge_logging import install_log_hygiene
from serving.guard import GuardMiddleware, install_request_timeout
from serving.http_protocol import install_http_protocol
from serving.journal import JournalError
from serving.metrics import ScoringMetrics
from serving.models import ModelUnavailableError
from serving.openapi import OpenAPIMiddleware
from serving.readiness import ReadinessMiddleware
from serving.runtime import ScoringRuntime
from serving.schemas import (
    BatchScoreRequest,
    BatchScoreResult,
    ScoreRequest,
    ScoreResult,
    Transaction,
)


def _too_many(field: str, limit: int, actual: int) -> ValidationError:
    """A 400 in the same JSON shape as every other validation error."""
    return ValidationError.from_exception_data(
        "BatchScoreRequest",
        [
            {
                "type": "too_long",
                "loc": (field,),
                "input": [],
                "ctx": {"field_type": "List", "max_length": limit, "actual_length": actual},
            }
        ],
    )


def _amount_too_large(index: int | None, limit: float) -> ValidationError:
    loc = ("transaction", "amount") if index is None else ("transactions", index, "amount")
    return ValidationError.from_exception_data(
        "Transaction",
        [{"type": "less_than_equal", "loc": loc, "input": 0, "ctx": {"le": limit}}],
    )


def _freeze_heap() -> None:
    """Move every live object out of the garbage collector's full passes.

    What the worker holds after start-up (libraries, models, registry and store clients) lives
    as long as the process; without this, each full collection walks all of it and stopped the
    worker for about 0.4 s now and then (the p99 of an open-loop benchmark run).
    """
    gc.collect()
    gc.freeze()


@bentoml.service(
    name="fraud_scoring",
    workers=1,
    resources={"cpu": "1"},
    # No max_concurrency: the in-flight caps are the edge's (serving_max_concurrency and
    # serving_max_in_flight_per_key), which answer 429 with Retry-After before any middleware.
    traffic={"timeout": 30},
)
class FraudScoring:
    """Online fraud scoring with feature lookup, canary/shadow routing and a prediction log."""

    def __init__(self) -> None:
        # Runs in the worker, once BentoML has configured its logging.
        install_log_hygiene()
        self.settings = get_settings()
        self.metrics = ScoringMetrics()
        self.runtime = ScoringRuntime(self.settings, on_reload=self.metrics.set_versions)
        self.metrics.set_versions(self.runtime.models.versions())
        self.batcher = MicroBatcher(self._score_now, self.settings.serving_max_batch)
        _freeze_heap()

    def _check_amounts(self, transactions: list[Transaction], single: bool) -> None:
        limit = self.settings.serving_max_amount
        for i, tx in enumerate(transactions):
            if tx.amount > limit:
                raise _amount_too_large(None if single else i, limit)

    def _score_now(
        self, transactions: Sequence[Transaction], started: Sequence[float] | float
    ) -> list[ScoreResult]:
        scored = self.runtime.score(transactions, started)
        rows = scored.log_rows
        self.metrics.count(rows["decision"], rows["served_by"], rows["degraded"])
        return scored.results

    async def _guarded(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (ModelUnavailableError, JournalError) as exc:
            raise bentoml.exceptions.ServiceUnavailable(str(exc)) from exc

    @bentoml.api(route="/v1/score", input_spec=ScoreRequest, output_spec=ScoreResult)
    async def score(self, transaction: Transaction) -> ScoreResult:
        """Score one transaction (concurrent requests share a micro-batch)."""
        started = time.perf_counter()
        self._check_amounts([transaction], single=True)
        return await self._guarded(self.batcher.submit(transaction, started))

    @bentoml.api(
        route="/v1/score/batch", input_spec=BatchScoreRequest, output_spec=BatchScoreResult
    )
    async def score_batch(self, transactions: list[Transaction]) -> BatchScoreResult:
        """Score up to ``serving_max_batch`` transactions; results in input order."""
        started = time.perf_counter()
        limit = self.settings.serving_max_batch
        if len(transactions) > limit:
            raise _too_many("transactions", limit, len(transactions))
        self._check_amounts(transactions, single=False)
        # On the event-loop thread, like the micro-batches (serving/batcher.py says why).
        try:
            return BatchScoreResult(results=self._score_now(transactions, started))
        except (ModelUnavailableError, JournalError) as exc:
            raise bentoml.exceptions.ServiceUnavailable(str(exc)) from exc

    @bentoml.api(route="/v1/admin/reload")
    async def reload(self) -> dict[str, Any]:
        """Re-read the registry aliases now (they are also polled periodically).

        200 when the champion served is the one the registry names; 409 when it cannot be
        (no alias, a missing version, artifacts that do not load), with what is served instead;
        503 when the registry cannot be read. The body is JSON in every case.
        """
        models = self.runtime.models
        try:
            changed = await asyncio.to_thread(self.runtime.reload)
        except Exception as exc:  # registry unreachable: say so, keep serving the loaded models
            return JSONResponse(
                {"error": f"registry not reachable: {exc}", "serving": models.versions()},
                status_code=503,
            )
        status = models.status()
        body = {
            "changed": changed,
            "serving": models.versions(),
            **{key: value for key, value in status.items() if key != "serving"},
        }
        problem = status["problems"].get(CHAMPION)
        if problem:
            return JSONResponse({"error": problem, **body}, status_code=409)
        return body

    def readiness(self) -> dict[str, object]:
        """What ``GET /readyz`` answers: ready or not, the models served, any fallback."""
        return self.runtime.readiness()

    async def __is_ready__(self) -> bool:
        """Ready when a champion is loaded and the online store answers."""
        return await asyncio.to_thread(self.runtime.ready)

    @bentoml.on_shutdown
    def flush_prediction_log(self) -> None:
        """Graceful shutdown: write every queued prediction-log row."""
        self.runtime.close()


FraudScoring.add_asgi_middleware(GuardMiddleware)
FraudScoring.add_asgi_middleware(ReadinessMiddleware)
FraudScoring.add_asgi_middleware(OpenAPIMiddleware, service=FraudScoring)
# The traffic timeout above, enforced without keeping each request alive for 30 s.
install_request_timeout()
# Deadlines, header limits and admission, in the HTTP protocol the worker's uvicorn builds.
install_http_protocol()
