"""Entity features for online scoring: a pluggable source, lookup timeouts and the fallback.

Fallback rule (docs/serving.md), the fill rule of the training set (features/store/): when the
online store cannot answer within the timeout or is known to be down, or has no row valid at
the transaction time for an entity (absent, or older than the view's TTL), the entity features
take the values the reference definitions (features/definitions.py) give an entity without any
transaction in its windows: counts 0, average amounts 0, risks 0. The answer is flagged
``degraded`` so nothing is invented silently, and the prediction log keeps the flag.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fraudops.contracts import CUSTOMER_FEATURES, ENTITY_FEATURES, TERMINAL_FEATURES
from fraudops.settings import Settings

log = logging.getLogger(__name__)

# A few threads: a hung lookup occupies one until the client's own timeout frees it.
LOOKUP_THREADS = 4


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
        """Raise :class:`FeatureSourceError` when the store is unreachable."""
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
        """A lookup of one (possibly unknown) entity pair proves the store answers."""
        self.lookup([1], [1], now_utc(1))


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


class GuardedFeatures:
    """Wraps a source with a timeout, a pause after failures and the documented fallback."""

    def __init__(
        self,
        source: FeatureSource | None,
        timeout_s: float,
        retry_s: float,
        per_row_s: float = 0.0,
    ) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.per_row_s = per_row_s
        self.retry_s = retry_s
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._pool = cf.ThreadPoolExecutor(
            max_workers=LOOKUP_THREADS, thread_name_prefix="feature-lookup"
        )

    def _mark_down(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.retry_s

    def fetch(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int], when: np.ndarray
    ) -> EntityFeatures:
        """Entity features valid at ``when`` (UTC datetime64[us]) per row; fills and flags."""
        n = len(customer_ids)
        error = self._lookup_error()
        frame = None
        if error is None:
            future = self._pool.submit(self.source.lookup, customer_ids, terminal_ids, when)
            timeout = self.timeout_s + n * self.per_row_s
            try:
                frame = future.result(timeout=timeout)
            except cf.TimeoutError:
                error = f"feature lookup of {n} rows timed out after {timeout * 1000:.0f} ms"
            except Exception as exc:
                error = str(exc)
            if error is not None:
                log.warning("online features unavailable, scoring with the fallback: %s", error)
                self._mark_down()
        if frame is None:
            return EntityFeatures(fallback_values(n), np.ones(n, dtype=bool), [None] * n, error)
        missing = frame.missing | np.isnan(frame.values).any(axis=1)
        values = np.where(np.isnan(frame.values), fallback_values(n), frame.values)
        # The answer is as fresh as the older of the two entities' rows.
        as_of = np.fmin(frame.customer_ts, frame.terminal_ts)
        as_of[np.isnan(frame.customer_ts) | np.isnan(frame.terminal_ts)] = np.nan
        return EntityFeatures(values, missing, _datetimes(as_of), None)

    def _lookup_error(self) -> str | None:
        if self.source is None:
            return "no feature source configured"
        if time.monotonic() < self._down_until:
            return "online store marked down after a recent failure"
        return None

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

    def ready(self) -> bool:
        """Whether the store answers right now (within the timeout)."""
        if self.source is None:
            return False
        future = self._pool.submit(self.source.ping)
        try:
            future.result(timeout=max(self.timeout_s, 1.0))
        except Exception as exc:
            log.warning("feature store not ready: %s", exc)
            return False
        return True
