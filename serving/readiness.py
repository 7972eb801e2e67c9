"""``GET /readyz`` with a JSON body: ready or not, what is served, from where, any fallback.

BentoML's own probe answers an empty 200 or a fixed 503 text from ``__is_ready__``; the
service's readiness also says which champion answers and why it is not the registry's (the
last good copy, or the version loaded before a broken one). The middleware answers the probe
from the running service instance's ``readiness()`` (200 when ready, else 503), and leaves
every other request, and the probe before the instance exists, to BentoML.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from serving.guard import ASGIApp, Receive, Scope, Send

PATH = "/readyz"


class ReadinessMiddleware:
    """Answer ``GET /readyz`` with the service's readiness as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The probe from the service instance; anything else passes through."""
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        service = _current_service()
        if service is None:
            await self.app(scope, receive, send)
            return
        report: dict[str, Any] = await asyncio.to_thread(service.readiness)
        body = json.dumps(report, default=str).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        status = 200 if report.get("ready") else 503
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _current_service() -> Any | None:
    from bentoml import get_current_service
    from bentoml.exceptions import BentoMLException

    try:
        service = get_current_service()
    except BentoMLException:  # still starting
        return None
    return service if hasattr(service, "readiness") else None
