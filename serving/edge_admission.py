"""Who may start a request now: the in-flight caps (whole service, per API key) and the rate limit.

Decided once a request's headers are read, before any ASGI app runs (serving/http_protocol.py),
so a refusal costs a few microseconds instead of a trip through BentoML's middlewares: a client
flooding the service with refused requests cannot slow the others down by the refusals alone.
Only valid API keys get a bucket and a counter, so random keys cannot grow these tables.

The rate limit counts work, not requests: a request costs one token per started
``serving_rate_limit_bytes_per_token`` bytes of its declared body (a single transaction, about
140 bytes, costs 1; a batch of 1,000, about 120-130 KB, costs 29-32 with the default 4 KiB), since a
batch of 1,000 costs the worker about as much as 30 single requests. A body without a
``Content-Length`` (chunked) costs a full bucket.

A rate-limited request's 429 is held ``serving_rate_limit_hold_s`` before it is sent (a timer:
no CPU), so a client retrying at once makes a few refusals per second per connection instead
of thousands, whose parsing and answers would otherwise take the worker's CPU from the other
keys. Holds are counted per key and in all (``serving_rate_limit_max_held_per_key``,
``serving_rate_limit_max_held``): beyond them the 429 is sent at once and closes its connection.
Held refusals are not in flight: they never count against the caps of admitted work.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass

from fraudops.settings import Settings
from serving.guard import TokenBuckets

# Paths never refused for load: the probes must answer while the service is busy.
EXEMPT_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})


@dataclass(frozen=True)
class Refusal:
    """A 429 answer: why, and the seconds the client should wait (``Retry-After``)."""

    reason: str
    message: str
    retry_after: int

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The ``Retry-After`` header of the answer."""
        return [("retry-after", str(self.retry_after))]


@dataclass(frozen=True)
class Ticket:
    """An admitted request; ``key`` is the API key it counts against (None: keyless)."""

    key: bytes | None


class Admission:
    """Counts the requests in flight and takes rate-limit tokens (one event loop, no locks)."""

    def __init__(
        self,
        keys: Iterable[str],
        rate_per_s: float,
        burst: int,
        max_in_flight: int,
        max_in_flight_per_key: int,
        bytes_per_token: int = 4_096,
        hold_s: float = 0.0,
        max_held_per_key: int = 0,
        max_held: int = 0,
    ) -> None:
        self.keys = [k.encode() for k in keys]
        self.bytes_per_token = bytes_per_token
        self.buckets = TokenBuckets(rate_per_s, burst)
        self.max_in_flight = max_in_flight
        self.max_per_key = max_in_flight_per_key
        self.in_flight = 0
        self.per_key: dict[bytes, int] = {}
        self.hold_s = hold_s
        self.max_held_per_key = max_held_per_key
        self.max_held = max_held
        self.held = 0
        self.held_per_key: dict[bytes, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        """The limits of the settings."""
        return cls(
            settings.serving_api_keys,
            settings.serving_rate_limit_per_s,
            settings.serving_rate_limit_burst,
            settings.serving_max_concurrency,
            settings.serving_max_in_flight_per_key,
            settings.serving_rate_limit_bytes_per_token,
            settings.serving_rate_limit_hold_s,
            settings.serving_rate_limit_max_held_per_key,
            settings.serving_rate_limit_max_held,
        )

    def valid_key(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
        """The request's ``X-API-Key`` if it is one of the configured keys, else None."""
        for name, value in headers:
            if name == b"x-api-key":
                return value if any(hmac.compare_digest(value, k) for k in self.keys) else None
        return None

    @staticmethod
    def declared_size(headers: Iterable[tuple[bytes, bytes]]) -> int:
        """The body size a request declares (``Content-Length``); 0 when it declares none."""
        for name, value in headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def cost(self, headers: Iterable[tuple[bytes, bytes]]) -> float:
        """The tokens a request costs, from its declared body size."""
        for name, value in headers:
            if name == b"content-length":
                size = int(value) if value.isdigit() else 0
                return max(1.0, float(-(-size // self.bytes_per_token)))
            if name == b"transfer-encoding":
                return self.buckets.burst
        return 1.0

    def admit(self, key: bytes | None, cost: float = 1.0) -> Ticket | Refusal:
        """Admit a request costing ``cost`` tokens (a ticket to release when it ends) or
        refuse it."""
        if self.in_flight >= self.max_in_flight:
            return Refusal(
                "service_busy",
                f"the service has {self.max_in_flight} requests in flight; retry shortly",
                1,
            )
        if key is not None:
            held = self.per_key.get(key, 0)
            if held >= self.max_per_key:
                return Refusal(
                    "key_in_flight",
                    f"this API key has {self.max_per_key} requests in flight already; "
                    "wait for answers before sending more",
                    1,
                )
            wait = self.buckets.take(key.decode("latin-1"), cost=cost)
            if wait > 0:
                return Refusal(
                    "rate_limit",
                    "rate limit exceeded for this API key; retry after the Retry-After seconds",
                    max(1, math.ceil(wait)),
                )
            self.per_key[key] = held + 1
        self.in_flight += 1
        return Ticket(key)

    def release(self, ticket: Ticket) -> None:
        """The admitted request ended (answered, or its connection was lost)."""
        self.in_flight -= 1
        if ticket.key is not None:
            _decrement(self.per_key, ticket.key)

    def holds(self, refusal: Refusal) -> bool:
        """Whether this kind of refusal is held before it is sent (rate limits, when enabled)."""
        return refusal.reason == "rate_limit" and self.hold_s > 0

    def hold(self, key: bytes) -> bool:
        """Take a hold for a refusal of ``key``: False when the key's or the worker's are full."""
        held = self.held_per_key.get(key, 0)
        if held >= self.max_held_per_key or self.held >= self.max_held:
            return False
        self.held_per_key[key] = held + 1
        self.held += 1
        return True

    def unhold(self, key: bytes) -> None:
        """The held refusal was sent (or its connection lost)."""
        self.held -= 1
        _decrement(self.held_per_key, key)


def _decrement(counts: dict[bytes, int], key: bytes) -> None:
    """One less for ``key``; a key at zero leaves the table (it cannot grow with idle keys)."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
