"""The trivial BentoML service the serving benchmark compares against: validate and echo."""

from __future__ import annotations

import bentoml

from serving.schemas import ScoreRequest, ScoreResult, Transaction


@bentoml.service(name="echo", workers=1, traffic={"timeout": 30, "max_concurrency": 512})
class Echo:
    """Same request schema and response shape as the scoring service, no work in between."""

    @bentoml.api(route="/v1/score", input_spec=ScoreRequest, output_spec=ScoreResult)
    async def score(self, transaction: Transaction) -> ScoreResult:
        """Answer a constant score for the transaction."""
        return ScoreResult(
            transaction_id=transaction.transaction_id,
            score=0.0,
            decision="approve",
            model_version="echo",
            features_as_of=None,
            degraded=False,
        )
