"""Everything a running scoring service holds: models, features, scorer, log, alias watcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from fraudops.settings import Settings
from serving.features import FeatureSourceError, GuardedFeatures, open_feature_source
from serving.journal import Journal
from serving.models import ModelSource, ModelUnavailableError
from serving.prediction_log import PredictionLog
from serving.schemas import Transaction
from serving.scoring import Scored, Scorer

log = logging.getLogger(__name__)

OnReload = Callable[[dict[str, str]], None]


def state_dir(settings: Settings) -> Path:
    """The service's local durable state: the journal and the last good champion."""
    return settings.serving_state_dir or settings.home / "serving"


class ScoringRuntime:
    """Built once per service worker from the settings; closed on graceful shutdown."""

    def __init__(self, settings: Settings, on_reload: OnReload | None = None) -> None:
        self.settings = settings
        self.on_reload = on_reload
        state = state_dir(settings)
        self.models = ModelSource(settings, last_good=state / "last_good")
        try:
            self.reload()
        except Exception:
            # The service still starts (on the last good champion, if any); the watcher retries.
            log.exception("reading the model registry failed at start-up")
        try:
            source = open_feature_source(settings)
        except (FeatureSourceError, OSError, ValueError) as exc:
            # The service still starts: every answer is degraded until the store is back.
            log.error("no online feature store, scoring in degraded mode: %s", exc)
            source = None
        self.features = GuardedFeatures.from_settings(source, settings)
        self.features.warm_up()
        self.scorer = Scorer(settings, self.models, self.features)
        journals = state / "journal"
        journal = (
            Journal(journals, fsync=settings.serving_journal_fsync)
            if settings.serving_journal
            else None
        )
        self.log = PredictionLog(
            settings.prediction_log_uri,
            settings.serving_log_batch_rows,
            settings.serving_log_flush_s,
            settings.storage_options,
            journal=journal,
            recover_from=journals,
            dedup_rows=settings.serving_log_dedup_rows,
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
        """Score and queue the rows for the prediction log (in the journal on return)."""
        scored = self.scorer.score(transactions, started)
        self.log.append(scored.log_rows)
        return scored

    def ready(self) -> bool:
        """A champion is loaded, the online store answers and the journal works."""
        return bool(self.readiness()["ready"])

    def readiness(self) -> dict[str, object]:
        """Whether the service can answer, with what it serves and any fallback in use."""
        try:
            self.models.champion()
            champion = True
        except ModelUnavailableError:
            champion = False
        features = self.features.readiness()
        journal = self.log.journal
        journal_error = journal.error if journal is not None else None
        return {
            "ready": champion and features.ready and journal_error is None,
            "feature_store": features.as_dict(),
            "prediction_log": {
                "journal": journal is not None,
                "journal_error": journal_error,
                "replayed": self.log.recovered.is_set(),
            },
            **self.models.status(),
        }

    def close(self) -> None:
        """Stop the watcher and flush the prediction log."""
        self._stop.set()
        written = self.log.close()
        log.info("prediction log flushed on shutdown: %d rows", written)
