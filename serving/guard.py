"""ASGI middleware in front of the API routes: API keys, body size and type, and the request
timeout.

It answers 401, 413 and 415 with a JSON error before any parsing, so bad requests cost little
and never reach the model. Probes and /metrics stay open. A request that has not started its
answer within the timeout gets a 504. The in-flight caps and the per-key rate limit (429) are
decided earlier, by the HTTP protocol (serving/http_protocol.py, serving/edge_admission.py).
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fraudops.settings import get_settings
from serving.edge_errors import reply

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"
JSON_MEDIA = b"application/json"
UTF8 = frozenset({b"utf-8", b"utf8"})


class TokenBuckets:
    """One token bucket per API key: ``rate`` tokens per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None, cost: float = 1.0) -> float:
        """Take ``cost`` tokens (at most a full bucket): 0.0 when allowed, else the seconds
        until they are available."""
        now = time.monotonic() if now is None else now
        cost = min(cost, self.burst)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate


def media_type_problem(content_type: bytes) -> str | None:
    """Why a Content-Type is refused (415), or None for JSON in UTF-8.

    Media types and parameter names are case-insensitive (RFC 9110); JSON is UTF-8 (RFC 8259),
    so any other declared charset is refused rather than silently read as UTF-8.
    """
    media, _, parameters = content_type.partition(b";")
    if media.strip().lower() != JSON_MEDIA:
        return "send the body as Content-Type: application/json"
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset" and value.strip().strip(b'"').lower() not in UTF8:
            return "the body must be UTF-8 JSON: send charset=utf-8 or no charset"
    return None


class GuardMiddleware:
    """Authenticate, type-check and size-check every ``/v1/`` request."""

    def __init__(self, app: ASGIApp) -> None:
        settings = get_settings()
        self.app = app
        self.keys = [k.encode() for k in settings.serving_api_keys]
        self.max_body = settings.serving_max_body_bytes

    def _key(self, scope: Scope) -> bytes | None:
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                return value if any(hmac.compare_digest(value, k) for k in self.keys) else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reject or pass the request on, with its body already read and size-checked."""
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        if self._key(scope) is None:
            await reply(send, 401, "missing or invalid API key: send a valid X-API-Key header")
            return
        headers = dict(scope.get("headers", []))
        if scope["method"] == "POST":
            problem = media_type_problem(headers.get(b"content-type", JSON_MEDIA))
            if problem is not None:
                await reply(send, 415, problem)
                return
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await reply(send, 413, f"request body larger than {self.max_body} bytes")
                return
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away (or the protocol cut a late body): nobody to answer
            if len(body) > self.max_body:
                await reply(send, 413, f"request body larger than {self.max_body} bytes")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (reading stops one chunk past the limit), or None on a disconnect."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_body or not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RequestTimeoutMiddleware:
    """BentoML's ``traffic.timeout`` middleware, with its timer cancelled when a request ends.

    BentoML's own arms a timer per request and never cancels it: every request's future,
    context and tracing span stayed alive for the whole timeout (30 s), hundreds of thousands
    of objects that each full garbage collection walked, stopping the worker for 100-400 ms
    under load. Same contract: a request that has not started its answer within ``timeout``
    seconds gets a 504 with a JSON error. ``install_request_timeout`` puts it in BentoML's place.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; answer 504 if it has not responded when the timer fires."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        responded = expired = False

        async def tracked_send(message: Message) -> None:
            nonlocal responded
            responded = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracked_send))

        def expire() -> None:
            nonlocal expired
            if not responded:
                expired = True
                task.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            await task
        except asyncio.CancelledError:
            if not expired:
                raise
            await reply(send, 504, f"not able to answer within {self.timeout:g} seconds")
        finally:
            timer.cancel()


def install_request_timeout() -> None:
    """Make BentoML build its HTTP apps with :class:`RequestTimeoutMiddleware`."""
    from bentoml._internal.server.http import traffic

    # BentoML imports the class from this module each time it assembles an app.
    traffic.TimeoutMiddleware = RequestTimeoutMiddleware
