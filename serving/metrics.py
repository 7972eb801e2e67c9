"""Service-specific Prometheus metrics, next to the request counts and latency BentoML exports."""

from __future__ import annotations

from collections.abc import Sequence


class ScoringMetrics:
    """Counters of decisions and degraded answers, and the model versions being served."""

    def __init__(self) -> None:
        # Imported here: BentoML sets the multiprocess directory after importing the service.
        import prometheus_client as prom

        self.scored = prom.Counter(
            "fraudops_scored_transactions",
            "Transactions scored, by decision, serving alias and degraded flag.",
            ["decision", "served_by", "degraded"],
        )
        self.model_version = prom.Gauge(
            "fraudops_model_version",
            "1 for each (alias, version) the service currently serves.",
            ["alias", "version"],
            multiprocess_mode="livemax",
        )
        self._served: dict[str, str] = {}

    def set_versions(self, versions: dict[str, str]) -> None:
        """Expose the loaded versions, retiring the ones replaced."""
        for alias, version in self._served.items():
            if versions.get(alias) != version:
                self.model_version.labels(alias=alias, version=version).set(0)
        for alias, version in versions.items():
            self.model_version.labels(alias=alias, version=version).set(1)
        self._served = dict(versions)

    def count(self, decisions: Sequence[str], served_by: Sequence[str], degraded: Sequence[bool]):
        """Count one call's answers."""
        tally: dict[tuple[str, str, str], int] = {}
        for key in zip(decisions, served_by, (str(bool(d)).lower() for d in degraded), strict=True):
            tally[key] = tally.get(key, 0) + 1
        for (decision, alias, flag), n in tally.items():
            self.scored.labels(decision=decision, served_by=alias, degraded=flag).inc(n)


class EdgeMetrics:
    """Requests the HTTP protocol refused before any ASGI app (BentoML never counts them)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self._counter = prom.Counter(
            "fraudops_http_refused_requests",
            "Requests refused by the HTTP edge before reaching the app, by status and reason.",
            ["status", "reason"],
        )
        self._children: dict[tuple[int, str], object] = {}

    def refused(self, status: int, reason: str) -> None:
        """Count one refused request."""
        child = self._children.get((status, reason))
        if child is None:
            child = self._children[(status, reason)] = self._counter.labels(str(status), reason)
        child.inc()
