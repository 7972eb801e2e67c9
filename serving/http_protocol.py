"""The worker's HTTP/1.1 protocol: uvicorn's httptools protocol with deadlines, header limits and
admission.

uvicorn has no header or body read timeout (its keep-alive timer is re-armed by every byte, and
a fresh connection has none), no limit on header size or count under httptools, and BentoML's
concurrency cap answers 429 without ``Retry-After`` to everyone once slow clients fill it. Here:

* deadlines per phase of a connection: ``idle`` (no byte of a next request yet: closed quietly
  after ``serving_keepalive_timeout_s``), ``head`` (from its first byte, the request line and
  headers must arrive within ``serving_header_timeout_s``), ``body`` (then the body within
  ``serving_body_timeout_s``); a late head or body gets a JSON 408 and the connection closes.
  A deadline is fixed when its phase starts: trickling bytes does not extend it.
* the request line and headers are limited to ``serving_max_header_bytes`` and
  ``serving_max_headers`` fields: 431 with JSON, counted while they arrive, so an oversized
  head is cut after at most one more read instead of being buffered whole.
* admission (serving/edge_admission.py) once the headers are in: the in-flight caps and the
  per-key rate limit answer 429 with ``Retry-After`` here, before any ASGI middleware. A
  rate-limit 429 is held ``serving_rate_limit_hold_s`` first (a timer; the connection reads no
  next request meanwhile), within caps per key and in all, beyond which it is sent at once
  with ``connection: close``.
* malformed requests get a JSON 400 instead of uvicorn's plain text.

Each connection keeps one timer, armed only when none is pending and re-armed when it fires
before the current deadline, so a busy keep-alive connection costs about one timer per deadline
period, not several per request. :func:`install_http_protocol` makes uvicorn's ``auto`` protocol
(the one BentoML's worker asks for) this class.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fraudops.settings import Settings, get_settings
from serving.edge_admission import EXEMPT_PATHS, Admission, Refusal, Ticket
from serving.edge_errors import asgi_refusal, raw_response, reply

log = logging.getLogger("serving.edge")

IDLE, HEAD, BODY, BUSY, CLOSING = "idle", "head", "body", "busy", "closing"
# After a refusal, what the client still sends is read and dropped this long before the close:
# closing with unread data makes the kernel reset the connection, and the client may then
# lose the answer it has not read yet (a lingering close, as web servers do).
LINGER_S = 2.0


class HeadTooLarge(Exception):
    """The request line and headers exceed a limit (answered 431)."""


@dataclass(frozen=True)
class EdgeLimits:
    """Deadlines (seconds) and header limits of every connection."""

    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        """The limits of the settings."""
        return cls(
            settings.serving_header_timeout_s,
            settings.serving_body_timeout_s,
            settings.serving_keepalive_timeout_s,
            settings.serving_max_header_bytes,
            settings.serving_max_headers,
            settings.serving_max_body_bytes,
        )


@dataclass
class Edge:
    """What every connection of a worker shares: the limits, the admission counters, metrics."""

    limits: EdgeLimits
    admission: Admission
    metrics: Any = None  # serving.metrics.EdgeMetrics in a worker; None in unit tests

    def refused(self, status: int, reason: str) -> None:
        """Count a refusal."""
        if self.metrics is not None:
            self.metrics.refused(status, reason)


_shared: Edge | None = None


def shared_edge() -> Edge:
    """The worker's edge, built from the settings at its first connection."""
    global _shared
    if _shared is None:
        from serving.metrics import EdgeMetrics

        settings = get_settings()
        _shared = Edge(
            EdgeLimits.from_settings(settings), Admission.from_settings(settings), EdgeMetrics()
        )
    return _shared


class _Counted:
    """Runs an admitted request's app and releases its ticket when the app ends."""

    __slots__ = ("admission", "app", "done", "ticket")

    def __init__(self, app: Any, ticket: Ticket, admission: Admission) -> None:
        self.app, self.ticket, self.admission, self.done = app, ticket, admission, False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.release()

    def release(self) -> None:
        """Release the ticket (once)."""
        if not self.done:
            self.done = True
            self.admission.release(self.ticket)


class _Held:
    """Sends a rate-limit 429 after the hold, or at once closing the connection when the holds
    are full.

    Waiting costs a timer, not CPU, and a client that retries at once waits with it: a flood on
    a few connections makes a few refusals a second each instead of thousands. A held refusal is
    no ticket (it never counts against the in-flight caps) and the connection reads no next
    request meanwhile (uvicorn queues a pipelined one and pauses reading); a body still arriving
    keeps its deadline, and a late one gets its 408 while the answer waits.
    """

    __slots__ = ("admission", "key", "refusal")

    def __init__(self, admission: Admission, key: bytes, refusal: Refusal) -> None:
        self.admission, self.key, self.refusal = admission, key, refusal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        admission, refusal = self.admission, self.refusal
        if not admission.hold(self.key):
            # Too many held already: refuse at once, and make the client come back through a
            # new connection rather than at full speed on this one.
            await reply(send, 429, refusal.message, [*refusal.headers, ("connection", "close")])
            return
        try:
            # Spread over [hold/2, hold]: the connections of one client refused together would
            # otherwise come back together and spend the refilled bucket at once, side by side.
            await asyncio.sleep(admission.hold_s * (0.5 + 0.5 * random.random()))
        finally:
            admission.unhold(self.key)
        await reply(send, 429, refusal.message, refusal.headers)  # a no-op if the client left


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with per-phase deadlines, header limits and admission."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge = shared_edge()
        self.limits = self.edge.limits
        self._phase = IDLE
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._head_exact = self._head_raw = self._head_fields = 0
        self._fresh_head = False

    # Deadlines
    def _enter(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + seconds
        if seconds == math.inf or (self._timer is not None and self._timer_at <= self._deadline):
            return  # the pending timer fires first and re-arms for the new deadline
        if self._timer is not None:
            self._timer.cancel()
        self._arm(self._deadline)

    def _arm(self, when: float) -> None:
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._deadline == math.inf:
            return
        now = self.loop.time()
        if self.flow.read_paused and self._phase != CLOSING:
            # Not reading is the server's doing (a pipelined request waits): not the client's.
            self._deadline = now + self._timeout_of(self._phase)
        if now < self._deadline:
            self._arm(self._deadline)
            return
        if self._phase in (IDLE, CLOSING):
            self.transport.close()
        elif self._phase == HEAD:
            limit = self.limits.header_timeout_s
            self._refuse(408, f"request headers not received within {limit:g} s", "head_timeout")
        elif self._phase == BODY:
            limit = self.limits.body_timeout_s
            self._refuse(408, f"request body not received within {limit:g} s", "body_timeout")

    def _timeout_of(self, phase: str) -> float:
        return {
            IDLE: self.limits.keepalive_timeout_s,
            HEAD: self.limits.header_timeout_s,
            BODY: self.limits.body_timeout_s,
        }.get(phase, math.inf)

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer with a JSON error (when no other answer is under way) and close."""
        cycle = self.cycle
        if not self.transport.is_closing():
            waiting = cycle is not None and not cycle.response_complete
            if waiting and self._phase == BODY and not cycle.response_started:
                # The app is waiting for the body: it reads a disconnect, its answer is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
                waiting = False
            if waiting:
                self.transport.close()
            else:
                self.transport.write(raw_response(status, message))
                self._linger()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("refused a request from %s: %d %s", client, status, message)
        self.edge.refused(status, reason)

    def _linger(self) -> None:
        """Send the end of the stream, drop what still arrives, close after ``LINGER_S``."""
        try:
            self.transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            self.transport.close()
            return
        self.flow.resume_reading()
        self._enter(CLOSING, LINGER_S)

    # Connection events
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the idle deadline: a connection that never sends a byte is closed."""
        super().connection_made(transport)
        self._enter(IDLE, self.limits.keepalive_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the timer and release the tickets of pipelined requests that never started."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, app in self.pipeline:
            if isinstance(app, _Counted):
                app.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse; refuse malformed requests (400) and oversized heads (431) with JSON."""
        if self._phase == CLOSING:
            return
        self._fresh_head = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, HeadTooLarge):
                self._refuse(431, str(cause), "head_too_large")
            else:
                self._refuse(400, "invalid HTTP request", "bad_request")
            return
        if self._phase == HEAD:
            # A head still incomplete: count what arrived, so it is cut after one more read.
            self._head_raw = self._head_exact if self._fresh_head else self._head_raw + len(data)
            if self._head_raw > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(
                    431, f"request line and headers larger than {limit} bytes", "head_too_large"
                )

    # Parser callbacks
    def on_message_begin(self) -> None:
        """A request starts: its head deadline runs from now."""
        super().on_message_begin()
        self._head_exact = self._head_raw = self._head_fields = 0
        self._fresh_head = True
        self._enter(HEAD, self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        """Count the request target towards the head size."""
        self._head_exact += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count the field; too many fields is a 431."""
        self._head_fields += 1
        self._head_exact += len(name) + len(value) + 4
        if self._head_fields > self.limits.max_headers:
            raise HeadTooLarge(f"more than {self.limits.max_headers} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Check the head size, start the body deadline, admit or refuse the request."""
        if self._head_exact > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            raise HeadTooLarge(f"request line and headers larger than {limit} bytes")
        self._enter(BODY, self.limits.body_timeout_s)
        if self._path() in EXEMPT_PATHS:
            super().on_headers_complete()
            return
        admission = self.edge.admission
        key = admission.valid_key(self.headers)
        cost = admission.cost(self.headers) if key else 1.0
        too_long = (
            key is not None and admission.declared_size(self.headers) > self.limits.max_body_bytes
        )
        decision = None if too_long else admission.admit(key, cost)
        app = self.app
        if decision is None:
            # Refused before it costs tokens (the guard answers the same for a body that grows
            # past the limit without declaring its size). Without a valid key, the guard's 401.
            limit = self.limits.max_body_bytes
            self.edge.refused(413, "body_too_large")
            self.app = asgi_refusal(413, f"request body larger than {limit} bytes")
        elif isinstance(decision, Refusal):
            self.edge.refused(429, decision.reason)
            if key is not None and admission.holds(decision):
                self.app = _Held(admission, key, decision)
            else:
                self.app = asgi_refusal(429, decision.message, decision.headers)
        else:
            self.app = _Counted(app, decision, admission)
        try:
            # uvicorn starts (or queues) the request with ``self.app``.
            super().on_headers_complete()
        finally:
            self.app = app

    def _path(self) -> str:
        """The request path as the router sees it (percent-decoded, as uvicorn does)."""
        path = httptools.parse_url(self.url).path.decode("ascii", "replace")
        return urllib.parse.unquote(path) if "%" in path else path

    def on_message_complete(self) -> None:
        """The body is in: no read deadline while the app works (its own timeout applies)."""
        super().on_message_complete()
        if self._phase == BODY:
            answered = self.cycle is not None and self.cycle.response_complete
            if answered:
                self._enter(IDLE, self.limits.keepalive_timeout_s)
            else:
                self._enter(BUSY, math.inf)

    def on_response_complete(self) -> None:
        """Start a pipelined request, or the idle deadline (instead of uvicorn's own timer)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == BUSY:
            self._enter(IDLE, self.limits.keepalive_timeout_s)


def install_http_protocol() -> None:
    """Make uvicorn's ``auto`` HTTP protocol, the one BentoML's worker uses, this module's."""
    import uvicorn.config

    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:EdgeHttpProtocol"
