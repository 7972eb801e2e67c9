"""ASGI middleware in front of the API routes: API keys, per-key rate limit, body size, type,
and the request timeout.

It answers 401, 429, 413 and 415 with a JSON error before any parsing, so bad or abusive
requests cost little and never reach the model. Probes and /metrics stay open. A request that
has not started its answer within the timeout gets a 504.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fraudops.settings import get_settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"


class TokenBuckets:
    """One token bucket per API key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


async def _reply(send: Send, status: int, error: str, headers: Iterable[tuple[str, str]] = ()):
    body = json.dumps({"error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Authenticate, rate-limit and size-check every ``/v1/`` request."""

    def __init__(self, app: ASGIApp) -> None:
        settings = get_settings()
        self.app = app
        self.keys = [k.encode() for k in settings.serving_api_keys]
        self.max_body = settings.serving_max_body_bytes
        self.buckets = TokenBuckets(
            settings.serving_rate_limit_per_s, settings.serving_rate_limit_burst
        )

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
        key = self._key(scope)
        if key is None:
            await _reply(send, 401, "missing or invalid API key: send a valid X-API-Key header")
            return
        wait = self.buckets.take(key.decode())
        if wait > 0:
            await _reply(
                send,
                429,
                "rate limit exceeded for this API key; retry after the Retry-After seconds",
                [("retry-after", str(max(1, math.ceil(wait))))],
            )
            return
        headers = dict(scope.get("headers", []))
        if scope["method"] == "POST":
            media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
            if media != b"application/json":
                await _reply(send, 415, "send the body as Content-Type: application/json")
                return
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await _reply(send, 413, f"request body larger than {self.max_body} bytes")
                return
            body = await self._read_body(receive)
            if body is None:
                await _reply(send, 413, f"request body larger than {self.max_body} bytes")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
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
            await _reply(send, 504, f"not able to answer within {self.timeout:g} seconds")
        finally:
            timer.cancel()


def install_request_timeout() -> None:
    """Make BentoML build its HTTP apps with :class:`RequestTimeoutMiddleware`."""
    from bentoml._internal.server.http import traffic

    # BentoML imports the class from this module each time it assembles an app.
    traffic.TimeoutMiddleware = RequestTimeoutMiddleware
