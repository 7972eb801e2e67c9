"""Entity features for online scoring: a pluggable source, lookup timeouts and the fallback.

Fallback rule (docs/serving.md), the fill rule of the training set (features/store/): when the
online store cannot answer within the timeout or is known to be down, or has no row valid at
the transaction time for an entity (absent, or older than the view's TTL), the entity features
take the values the reference definitions (features/definitions.py) give an entity without any
transaction in its windows: counts 0, average amounts 0, risks 0. The answer is flagged
``degraded`` so nothing is invented silently, and the prediction log keeps the flag. Such rows
are then scored by the champion's request-time fallback model when there is one
(serving/scoring.py), which was trained on exactly these fill values.

A circuit breaker decides when the store is "known to be down": it opens only when failures
persist over the last lookups, not after one slow answer, and probes the store again after its
open time. Readiness means the store answers *and* holds the newest materialized rows: a few
entities it is known to hold are read back and must carry that as-of time.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fraudops.contracts import CUSTOMER_FEATURES, ENTITY_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings

log = logging.getLogger(__name__)

# A few threads: a hung lookup occupies one until the client's own timeout frees it.
LOOKUP_THREADS = 4
# Entities per view that a readiness check reads back: enough to catch a partial store,
# few enough to stay a millisecond read.
READY_SAMPLE = 8
# The readiness check's own timeout floor: it may read the registry as well as the store.
READY_TIMEOUT_S = 1.0


class FeatureSourceError(RuntimeError):
    """The online store could not be reached or answered with an error."""


@dataclass(frozen=True)
class OnlineRows:
    """What a store returned per row: entity features, unusable rows, feature timestamps."""

    values: np.ndarray  # (n, 12) in ENTITY_FEATURES order; NaN where the store had nothing
    missing: np.ndarray  # True where the store's rule rejected a row (absent, expired)
    customer_ts: np.ndarray  # seconds since the epoch, NaN when unknown
    terminal_ts: np.ndarray


class FeatureSource(Protocol):
    """Where entity features come from (Feast in production, anything with this shape in tests)."""

    def lookup(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int], when: np.ndarray
    ) -> OnlineRows:
        """Entity features valid at the transaction times ``when`` (UTC datetime64[us])."""
        ...

    def ping(self) -> None:
        """Raise :class:`FeatureSourceError` (the reason) unless the store can serve now."""
        ...


def now_utc(n: int) -> np.ndarray:
    """The current UTC time ``n`` times, as the datetime64[us] the lookups take."""
    return np.full(n, np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "us"))


def _seconds(stamps: np.ndarray) -> np.ndarray:
    """datetime64 stamps as float seconds since the epoch (NaN for NaT)."""
    out = stamps.astype("datetime64[us]").astype("int64") / 1e6
    out[np.isnat(stamps)] = np.nan
    return out


class FeastFeatureSource:
    """Online reads through features.store's reader (Feast's online store and its keys)."""

    def __init__(self, store: object) -> None:
        from features.store import OnlineFeatures

        self.online = OnlineFeatures(store)
        self.order = {
            "customer_features": CUSTOMER_FEATURES,
            "terminal_features": TERMINAL_FEATURES,
        }
        # Per view: the as-of the sample was picked for, and the sampled ids.
        self._samples: dict[str, tuple[np.datetime64 | None, np.ndarray]] = {}
        # The registry is not on the scoring path: when it cannot be read, check against the
        # last materialization it reported.
        self._as_of: dict[str, dt.datetime | None] = {}

    def lookup(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int], when: np.ndarray
    ) -> OnlineRows:
        """One online read per entity view; rows not valid at ``when`` are marked missing."""
        moment = np.asarray(when, dtype="datetime64[us]")
        missing = np.zeros(len(moment), dtype=bool)
        values, seconds = [], []
        for view, ids in (("customer_features", customer_ids), ("terminal_features", terminal_ids)):
            try:
                # Validity is the fill rule of features/store/online.py, which training shares.
                found, stamps, valid = self.online.valid_rows(view, ids, moment)
            except Exception as exc:  # any client error means "unreachable" to the caller
                raise FeatureSourceError(f"Feast online read of {view} failed: {exc}") from exc
            missing |= ~valid
            columns = [self.online.features[view].index(f) for f in self.order[view]]
            found = found[:, columns]
            found[~valid] = np.nan  # a row not valid now is not used, not even partly
            when_valid = _seconds(stamps)
            when_valid[~valid] = np.nan
            values.append(found)
            seconds.append(when_valid)
        return OnlineRows(np.hstack(values), missing, seconds[0], seconds[1])

    def ping(self) -> None:
        """Raise :class:`FeatureSourceError` unless every view holds its newest materialization.

        An answer alone proves little: an emptied Redis answers every lookup, with nothing. So
        a few entities the store holds rows of (picked once per as-of)
        are read back and must carry the newest as-of the Feast registry records for the view
        (any row, when the registry records none: rows written without materialization).
        """
        self.online.recheck()  # a store file replaced since this thread opened it is reopened
        for view in self.order:
            reason = self._view_not_ready(view, self._newest_as_of(view))
            if reason is not None:
                raise FeatureSourceError(reason)

    def _newest_as_of(self, view: str) -> dt.datetime | None:
        """The newest materialized as-of of ``view`` per the registry (last known if unreadable)."""
        from features.store import latest_materialized

        try:
            self._as_of[view] = latest_materialized(self.online.store, view)
        except Exception as exc:
            log.warning("feature registry unreadable, using its last answer: %s", exc)
        return self._as_of.get(view)

    def _view_not_ready(self, view: str, as_of: dt.datetime | None) -> str | None:
        """Why ``view``'s rows as of ``as_of`` are not all in the store (None when they are)."""
        since = None
        wanted = ""
        if as_of is not None:
            if as_of.tzinfo is None:  # registries store UTC; some hand it back naive
                as_of = as_of.replace(tzinfo=dt.UTC)
            since = np.datetime64(as_of.astimezone(dt.UTC).replace(tzinfo=None), "us")
            wanted = f" as of {as_of.isoformat()}"
        try:
            sample = self._samples.get(view)
            if sample is None or sample[0] != since:
                ids = self.online.sample_ids(view, READY_SAMPLE, since)
                if ids is None:  # a store that cannot list its entities: an answer must do
                    self.online.entity_values(view, [1])
                    return None
                if len(ids) == 0:
                    return f"the online store holds no row of {view}{wanted}"
                sample = self._samples[view] = (since, ids)
            _, stamps = self.online.entity_values(view, sample[1])
        except Exception as exc:
            raise FeatureSourceError(f"Feast online read of {view} failed: {exc}") from exc
        found = ~np.isnat(stamps)
        fresh = found if since is None else found & (stamps >= since)
        if fresh.all():
            return None
        self._samples.pop(view, None)  # pick a new sample at the next check
        absent, older = int((~found).sum()), int((found & ~fresh).sum())
        return (
            f"{absent + older} of {len(fresh)} sampled {view} entities have no row{wanted} in "
            f"the online store ({absent} absent, {older} older)"
        )


def open_feature_source(settings: Settings) -> FeatureSource:
    """The Feast source for ``settings``: a repo path when configured, else features.store."""
    import feast

    from features.store import open_store

    if settings.serving_feature_repo is not None:
        store = feast.FeatureStore(repo_path=str(settings.serving_feature_repo))
    else:
        store = open_store(settings)
    return FeastFeatureSource(store)


@dataclass(frozen=True)
class EntityFeatures:
    """Entity features ready for the model, and what the fallback had to fill."""

    values: np.ndarray
    missing: np.ndarray
    as_of: list[dt.datetime | None]
    store_error: str | None


def fallback_values(n: int) -> np.ndarray:
    """The documented fallback: the features of an entity without any transaction."""
    return np.zeros((n, len(ENTITY_FEATURES)), dtype="float64")


def _datetimes(seconds: np.ndarray) -> list[dt.datetime | None]:
    """Epoch seconds (NaN: unknown) as UTC datetimes, converting each distinct value once."""
    # Rows share a handful of as-of times (one per materialized day).
    distinct, index = np.unique(seconds, return_inverse=True)
    converted = [None if np.isnan(t) else dt.datetime.fromtimestamp(t, dt.UTC) for t in distinct]
    return [converted[i] for i in index.tolist()]


class CircuitBreaker:
    """Keeps lookups off the store while its failures persist, judged on the last lookups.

    Closed: every lookup goes to the store. It opens when, of the last ``window`` lookups (at
    least ``min_calls`` of them), a ``failure_share`` or more failed, or when the last
    ``min_calls`` all did (a store that just died). Open: lookups get the fallback at once for
    ``open_s``. Half-open: then one lookup at a time probes the store; its success closes the
    breaker with a fresh window, its failure opens it again.
    """

    def __init__(
        self, window: int = 20, failure_share: float = 0.5, min_calls: int = 5, open_s: float = 2.0
    ) -> None:
        if not 1 <= min_calls <= window or not 0.0 < failure_share <= 1.0 or open_s < 0:
            raise ValueError(
                "the breaker needs 1 <= min_calls <= window, 0 < failure_share <= 1, open_s >= 0"
            )
        self.window = window
        self.failure_share = failure_share
        self.min_calls = min_calls
        self.open_s = open_s
        self.reason: str | None = None  # why it last opened
        self._outcomes: deque[bool] = deque(maxlen=window)  # True: the lookup failed
        self._failures = 0
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    def _state(self, now: float) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if now - self._opened_at < self.open_s else "half_open"

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open, and its open time is over)."""
        with self._lock:
            return self._state(time.monotonic())

    def admit(self) -> bool | None:
        """May a lookup go to the store: None no (fallback), True as the probe, False plainly."""
        with self._lock:
            state = self._state(time.monotonic())
            if state == "closed":
                return False
            if state == "open" or self._probing:
                return None
            self._probing = True
            return True

    def record(self, probe: bool | None, failed: bool, error: str | None = None) -> None:
        """The outcome of a lookup that :meth:`admit` let through (``probe``: what it said)."""
        with self._lock:
            if probe:
                self._probing = False
                if failed:
                    self._open(f"the probe lookup failed too ({error})")
                else:
                    self._close()
                return
            if self._opened_at is not None:
                return  # a lookup started before the breaker opened: already counted against it
            if len(self._outcomes) == self.window:
                self._failures -= self._outcomes[0]
            self._outcomes.append(failed)
            self._failures += failed
            self._consecutive = self._consecutive + 1 if failed else 0
            calls = len(self._outcomes)
            persistent = calls >= self.min_calls and self._failures >= self.failure_share * calls
            if persistent or self._consecutive >= self.min_calls:
                self._open(f"{self._failures} of the last {calls} lookups failed (last: {error})")

    def _open(self, reason: str) -> None:
        self._opened_at = time.monotonic()
        self.reason = reason
        log.warning("online store circuit breaker open for %.1f s: %s", self.open_s, reason)

    def _close(self) -> None:
        self._opened_at = None
        self._outcomes.clear()
        self._failures = self._consecutive = 0
        log.info("online store circuit breaker closed: a probe lookup succeeded")


@dataclass(frozen=True)
class FeatureReadiness:
    """Whether the online store can serve the materialized features, why not, and the breaker."""

    ready: bool
    reason: str | None
    breaker: str

    def as_dict(self) -> dict[str, object]:
        """The readiness as JSON-ready values."""
        return dataclasses.asdict(self)


class GuardedFeatures:
    """Wraps a source with a timeout, a circuit breaker and the documented fallback."""

    def __init__(
        self,
        source: FeatureSource | None,
        timeout_s: float,
        retry_s: float,
        per_row_s: float = 0.0,
        *,
        window: int = 20,
        failure_share: float = 0.5,
        min_calls: int = 5,
    ) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.per_row_s = per_row_s
        self.retry_s = retry_s
        # The open time is the retry delay: how long a known-down store is left alone.
        self.breaker = CircuitBreaker(window, failure_share, min_calls, open_s=retry_s)
        self._pool = cf.ThreadPoolExecutor(
            max_workers=LOOKUP_THREADS, thread_name_prefix="feature-lookup"
        )

    @classmethod
    def from_settings(cls, source: FeatureSource | None, settings: Settings) -> GuardedFeatures:
        """The guard configured by the ``serving_feature_*`` settings."""
        return cls(
            source,
            settings.serving_feature_timeout_ms / 1000.0,
            settings.serving_feature_retry_s,
            settings.serving_feature_timeout_per_row_ms / 1000.0,
            window=settings.serving_feature_breaker_window,
            failure_share=settings.serving_feature_breaker_failure_share,
            min_calls=settings.serving_feature_breaker_min_calls,
        )

    def fetch(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int], when: np.ndarray
    ) -> EntityFeatures:
        """Entity features valid at ``when`` (UTC datetime64[us]) per row; fills and flags."""
        n = len(customer_ids)
        frame, error = self._lookup(customer_ids, terminal_ids, when)
        if frame is None:
            return EntityFeatures(fallback_values(n), np.ones(n, dtype=bool), [None] * n, error)
        missing = frame.missing | np.isnan(frame.values).any(axis=1)
        values = np.where(np.isnan(frame.values), fallback_values(n), frame.values)
        # The answer is as fresh as the older of the two entities' rows.
        as_of = np.fmin(frame.customer_ts, frame.terminal_ts)
        as_of[np.isnan(frame.customer_ts) | np.isnan(frame.terminal_ts)] = np.nan
        return EntityFeatures(values, missing, _datetimes(as_of), None)

    def _lookup(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int], when: np.ndarray
    ) -> tuple[OnlineRows | None, str | None]:
        """The store's rows, or why there are none (no source, breaker open, timeout, error)."""
        if self.source is None:
            return None, "no feature source configured"
        probe = self.breaker.admit()
        if probe is None:
            return None, f"online store skipped, circuit breaker open: {self.breaker.reason}"
        n = len(customer_ids)
        future = self._pool.submit(self.source.lookup, customer_ids, terminal_ids, when)
        timeout = self.timeout_s + n * self.per_row_s
        frame, error = None, None
        try:
            frame = future.result(timeout=timeout)
        except cf.TimeoutError:
            future.cancel()  # still queued behind hung lookups: it would only add to them
            error = f"feature lookup of {n} rows timed out after {timeout * 1000:.0f} ms"
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        self.breaker.record(probe, failed=error is not None, error=error)
        if error is not None:
            log.warning("online features unavailable, scoring with the fallback: %s", error)
        return frame, error

    def warm_up(self) -> None:
        """Untimed lookups on every pool thread, so no request pays for opening connections."""
        if self.source is None:
            return
        futures = [
            self._pool.submit(self.source.lookup, [1], [1], now_utc(1))
            for _ in range(LOOKUP_THREADS)
        ]
        for future in futures:
            try:
                future.result()
            except Exception as exc:
                log.warning("feature store warm-up failed (requests will be degraded): %s", exc)
                return

    def readiness(self) -> FeatureReadiness:
        """Whether the store answers with its newest materialized rows now, and why not."""
        if self.source is None:
            return FeatureReadiness(False, "no feature source configured", self.breaker.state)
        timeout = max(self.timeout_s, READY_TIMEOUT_S)
        future = self._pool.submit(self.source.ping)
        reason = None
        try:
            future.result(timeout=timeout)
        except cf.TimeoutError:
            future.cancel()
            reason = f"the online store did not answer within {timeout * 1000:.0f} ms"
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
        if reason is not None:
            log.warning("feature store not ready: %s", reason)
        return FeatureReadiness(reason is None, reason, self.breaker.state)

    def ready(self) -> bool:
        """Whether the store answers with its newest materialized rows now."""
        return self.readiness().ready
