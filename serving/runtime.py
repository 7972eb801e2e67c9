"""Everything a running scoring service holds: models, features, scorer, log, alias watcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from fraudops.settings import Settings
from serving.features import FeatureSourceError, GuardedFeatures, open_feature_source
from serving.models import ModelSource, ModelUnavailableError
from serving.prediction_log import PredictionLog
from serving.schemas import Transaction
from serving.scoring import Scored, Scorer

log = logging.getLogger(__name__)

OnReload = Callable[[dict[str, str]], None]


class ScoringRuntime:
    """Built once per service worker from the settings; closed on graceful shutdown."""

    def __init__(self, settings: Settings, on_reload: OnReload | None = None) -> None:
        self.settings = settings
        self.on_reload = on_reload
        self.models = ModelSource(settings)
        self.reload()
        try:
            source = open_feature_source(settings)
        except (FeatureSourceError, OSError, ValueError) as exc:
            # The service still starts: every answer is degraded until the store is back.
            log.error("no online feature store, scoring in degraded mode: %s", exc)
            source = None
        self.features = GuardedFeatures(
            source,
            settings.serving_feature_timeout_ms / 1000.0,
            settings.serving_feature_retry_s,
            settings.serving_feature_timeout_per_row_ms / 1000.0,
        )
        self.features.warm_up()
        self.scorer = Scorer(settings, self.models, self.features)
        self.log = PredictionLog(
            settings.prediction_log_uri,
            settings.serving_log_batch_rows,
            settings.serving_log_flush_s,
            settings.storage_options,
        )
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="alias-watcher", daemon=True)
        self._watcher.start()

    def reload(self) -> dict[str, str]:
        """Load the versions the aliases point to now; returns what changed."""
        changed = self.models.refresh()
        if changed:
            log.info("model aliases changed: %s", changed)
            if self.on_reload is not None:
                self.on_reload(self.models.versions())
        return changed

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.serving_reload_interval_s):
            try:
                self.reload()
            except Exception:
                # A registry hiccup must not stop the watcher; the loaded models keep serving.
                log.exception("checking the model aliases failed; keeping the loaded versions")

    def score(
        self, transactions: Sequence[Transaction], started: float | Sequence[float] | None = None
    ) -> Scored:
        """Score and queue the rows for the prediction log."""
        scored = self.scorer.score(transactions, started)
        self.log.append(scored.log_rows)
        return scored

    def ready(self) -> bool:
        """A champion is loaded and the online store answers."""
        try:
            self.models.champion()
        except ModelUnavailableError:
            return False
        return self.features.ready()

    def close(self) -> None:
        """Stop the watcher and flush the prediction log."""
        self._stop.set()
        written = self.log.close()
        log.info("prediction log flushed on shutdown: %d rows", written)
