"""The feature guard's circuit breaker and readiness, with a store that answers, stalls or fails.

The store here is a small ``FeatureSource`` whose lookups really sleep or raise (it stands for
the online store, not for our code); the guard, its thread pool and its timeouts are the real ones.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fraudops.contracts import ENTITY_FEATURES
from fraudops.settings import get_settings
from serving.features import CircuitBreaker, FeatureSourceError, GuardedFeatures, OnlineRows

WHEN = np.array(["2018-05-16T10:00:00"], dtype="datetime64[us]")
# Far above a healthy in-memory lookup even on a loaded machine, so only the stalls time out.
TIMEOUT_S = 0.25
STALL_S = 0.5


class _Store:
    """An online store stand-in: answers, stalls past the timeout every ``stall_every`` calls,
    hangs on every call, or refuses connections."""

    def __init__(self, stall_every: int = 0) -> None:
        self.mode = "up"
        self.stall_every = stall_every
        self.calls = 0
        self.stalls = 0
        self._lock = threading.Lock()

    def lookup(self, customer_ids, terminal_ids, when) -> OnlineRows:
        with self._lock:
            self.calls += 1
            stall = self.mode == "hang" or (self.stall_every and self.calls % self.stall_every == 0)
            self.stalls += bool(stall)
        if self.mode == "down":
            raise FeatureSourceError("connection refused")
        if stall:
            time.sleep(STALL_S)
        n = len(customer_ids)
        stamp = np.full(n, 1_526_428_800.0)
        return OnlineRows(np.ones((n, len(ENTITY_FEATURES))), np.zeros(n, bool), stamp, stamp)

    def ping(self) -> None:
        if self.mode == "down":
            raise FeatureSourceError("connection refused")
        if self.mode == "hang":
            time.sleep(STALL_S * 4)


def _fetch(guarded: GuardedFeatures, times: int) -> list[str | None]:
    """``times`` single-transaction lookups in a row; the store error of each answer."""
    return [guarded.fetch([1], [1], WHEN).store_error for _ in range(times)]


def test_isolated_slow_lookups_do_not_open_the_breaker():
    store = _Store(stall_every=20)
    guarded = GuardedFeatures(store, timeout_s=TIMEOUT_S, retry_s=2.0)
    errors = _fetch(guarded, 100)
    degraded = sum(e is not None for e in errors)
    # Only the stalled lookups themselves fell back; every other one reached the store.
    assert degraded == store.stalls, f"{degraded} degraded answers for {store.stalls} stalls"
    assert store.calls == 100 and store.stalls == 5
    assert guarded.breaker.state == "closed"


@pytest.mark.parametrize("failure", ["down", "hang"])
def test_a_dead_store_opens_the_breaker_within_a_few_calls(failure):
    store = _Store()
    guarded = GuardedFeatures(store, timeout_s=TIMEOUT_S, retry_s=60.0)
    assert _fetch(guarded, 30) == [None] * 30  # a full window of healthy lookups
    store.mode = failure
    before = store.calls
    errors = _fetch(guarded, 20)
    assert all(errors)
    tried = store.calls - before
    assert tried <= guarded.breaker.min_calls, f"{tried} lookups reached a dead store"
    assert guarded.breaker.state == "open"
    assert "circuit breaker open" in errors[-1]


def test_persistent_intermittent_failures_open_the_breaker():
    store = _Store()
    guarded = GuardedFeatures(store, timeout_s=TIMEOUT_S, retry_s=60.0)
    for i in range(20):
        store.mode = "down" if i % 2 else "up"
        guarded.fetch([1], [1], WHEN)
    # Every other lookup failing is not an isolated hiccup: the breaker stopped the calls.
    assert guarded.breaker.state == "open"
    assert store.calls < 20


def test_recovery_half_open_probe_closes_the_breaker_or_reopens_it():
    store = _Store()
    guarded = GuardedFeatures(store, timeout_s=TIMEOUT_S, retry_s=0.3)
    store.mode = "down"
    _fetch(guarded, 10)
    assert guarded.breaker.state == "open"
    # Still down when the open time has passed: one probe, which fails, and it opens again.
    time.sleep(0.35)
    calls = store.calls
    assert all(_fetch(guarded, 5))
    assert store.calls == calls + 1
    assert guarded.breaker.state == "open"
    # Back up: the next probe after the open time succeeds and closes the breaker.
    store.mode = "up"
    assert _fetch(guarded, 1)[0] is not None  # still inside the open time
    time.sleep(0.35)
    assert _fetch(guarded, 20) == [None] * 20
    assert guarded.breaker.state == "closed"


def test_only_one_probe_at_a_time_while_half_open():
    breaker = CircuitBreaker(window=10, failure_share=0.5, min_calls=2, open_s=0.05)
    for _ in range(2):
        breaker.record(breaker.admit(), failed=True)
    assert breaker.admit() is None  # open: rejected without a call
    time.sleep(0.06)
    assert breaker.state == "half_open"
    probe = breaker.admit()
    assert probe is True
    assert breaker.admit() is None  # a second caller waits for the probe's outcome
    breaker.record(probe, failed=False)
    assert breaker.state == "closed"
    assert breaker.admit() is False  # an ordinary call again


def test_readiness_says_why_the_store_is_not_ready():
    store = _Store()
    guarded = GuardedFeatures(store, timeout_s=TIMEOUT_S, retry_s=1.0)
    ready = guarded.readiness()
    assert ready.ready and ready.reason is None and guarded.ready()
    store.mode = "down"
    down = guarded.readiness()
    assert not down.ready and not guarded.ready()
    assert "connection refused" in down.reason
    store.mode = "hang"
    hung = guarded.readiness()
    assert not hung.ready and "did not answer" in hung.reason
    none = GuardedFeatures(None, timeout_s=TIMEOUT_S, retry_s=1.0).readiness()
    assert not none.ready and "no feature source" in none.reason


def test_the_breaker_follows_the_settings():
    settings = get_settings(
        serving_feature_timeout_ms=TIMEOUT_S * 1000,
        serving_feature_retry_s=60.0,
        serving_feature_breaker_window=4,
        serving_feature_breaker_failure_share=1.0,
        serving_feature_breaker_min_calls=2,
    )
    store = _Store()
    guarded = GuardedFeatures.from_settings(store, settings)
    store.mode = "down"
    _fetch(guarded, 10)
    assert store.calls == 2  # two failures in a row open it with these settings
    assert guarded.breaker.open_s == 60.0
