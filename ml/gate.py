"""The promotion gate: does the challenger replace the champion on the newest test window?

Both models are scored on the same rows (the newest test window of the current training set).
The challenger is promoted only if every absolute floor holds and its average precision beats
the champion's by the configured margin; otherwise the champion stays and the reason is
recorded as tags on the challenger version. In manual approval mode a passing challenger waits
for ``fraudops-model promote <version>``.

Before it decides, the gate also replays the newest labelled days of logged traffic through the
challenger (:mod:`ml.backtest`) and records the comparison with the champion's answers on the
challenger's MLflow run and in the decision; a challenger that does clearly worse there than
the champion did is not promoted. Without labelled logged traffic it says so and decides on the
test window alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fraudops.contracts import CHALLENGER, CHAMPION
from fraudops.settings import Settings
from ml import backtest, tracking
from ml.backtest import Backtest
from ml.dataset import TrainingData, load_training_set
from ml.pipeline import evaluate_model, make_splits
from ml.registry import alias_version, move_champion
from ml.train import Progress

PROMOTED, KEPT, REJECTED = "promoted", "kept_champion", "rejected"
AWAITING = "awaiting_approval"


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the gate, with the figures it was based on."""

    decision: str
    reason: str
    challenger_version: str
    champion_version: str | None
    challenger: dict[str, float]
    champion: dict[str, float] | None
    # The replay on logged traffic, or None with the reason in ``backtest_note``.
    backtest: Backtest | None = None
    backtest_note: str = ""

    @property
    def promote(self) -> bool:
        """Whether the challenger passed the gate (promoted, or waiting for approval)."""
        return self.decision in (PROMOTED, AWAITING)


def floor_failures(metrics: dict[str, float], settings: Settings) -> list[str]:
    """The absolute floors ``metrics`` misses, as readable reasons."""
    failures = []
    if not metrics["average_precision"] >= settings.promotion_min_ap:
        failures.append(
            f"average precision {metrics['average_precision']:.4f} < floor "
            f"{settings.promotion_min_ap}"
        )
    if not metrics["roc_auc"] >= settings.promotion_min_roc_auc:
        failures.append(
            f"ROC AUC {metrics['roc_auc']:.4f} < floor {settings.promotion_min_roc_auc}"
        )
    if not metrics["latency_p99_ms"] <= settings.promotion_max_p99_ms:
        failures.append(
            f"p99 latency {metrics['latency_p99_ms']:.2f} ms > ceiling "
            f"{settings.promotion_max_p99_ms} ms"
        )
    return failures


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, settings: Settings
) -> tuple[bool, str]:
    """Whether the challenger should replace the champion, and why (pure function)."""
    failures = floor_failures(challenger, settings)
    if failures:
        return False, "below absolute floors: " + "; ".join(failures)
    if champion is None:
        return True, "no champion yet and all floors hold"
    gain = challenger["average_precision"] - champion["average_precision"]
    verdict = (
        f"average precision {challenger['average_precision']:.4f} vs champion "
        f"{champion['average_precision']:.4f} (gain {gain:+.4f}, margin "
        f"{settings.promotion_ap_margin})"
    )
    if gain >= settings.promotion_ap_margin:
        return True, f"beats the champion: {verdict}"
    return False, f"does not beat the champion by the margin: {verdict}"


def backtest_verdict(
    passed: bool, reason: str, result: Backtest | None, note: str, settings: Settings
) -> tuple[bool, str]:
    """The test-window verdict with the backtest taken into account (pure function)."""
    if result is None:
        return passed, f"{reason}; {note}: decided on the test window alone"
    limit = settings.promotion_backtest_max_ap_drop
    if passed and result.ap_gain < -limit:
        return False, (
            f"{reason}, but on logged traffic its AP is {-result.ap_gain:.4f} below the "
            f"champion's answers (more than the {limit} allowed): {result.summary()}"
        )
    return passed, f"{reason}; {result.summary()}"


def _backtest(
    settings: Settings, version: str, progress: Progress | None
) -> tuple[Backtest | None, str]:
    """Replay logged traffic through ``version``, recorded on its MLflow run."""
    if progress:
        progress(f"gate: backtest of version {version} on logged traffic")
    result = backtest.backtest_version(settings, version)
    run_id = tracking.version_run_id(settings, version)
    if run_id:
        backtest.record(settings, run_id, result)
    if isinstance(result, str):
        return None, result
    return result, result.summary()


def run_gate(
    settings: Settings, data: TrainingData | None = None, progress: Progress | None = None
) -> GateDecision:
    """Compare challenger and champion on the newest test window and apply the decision."""
    client = tracking.configure(settings)
    name = settings.model_name
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise LookupError(f"model {name!r} has no {CHALLENGER!r}; run the retraining job first")
    champion = alias_version(client, name, CHAMPION)
    new = str(challenger.version)
    old = str(champion.version) if champion is not None else None
    data = data or load_training_set(settings)
    splits = make_splits(data.frame, settings)
    test = splits.test_frame
    if progress:
        progress(f"gate: challenger version {new} on the {len(test):,} rows of the test window")
    challenger_metrics = evaluate_model(f"models:/{name}/{new}", test)
    if old == new:
        reason = "challenger is already the champion"
        return GateDecision(KEPT, reason, new, old, challenger_metrics, challenger_metrics)
    if progress and old:
        progress(f"gate: champion version {old} on the same rows")
    champion_metrics = evaluate_model(f"models:/{name}/{old}", test) if old else None
    passed, reason = decide(challenger_metrics, champion_metrics, settings)
    replay, note = _backtest(settings, new, progress)
    passed, reason = backtest_verdict(passed, reason, replay, note, settings)
    decision = KEPT if old else REJECTED
    if passed:
        decision = AWAITING if settings.promotion_manual else PROMOTED
    tags = {
        "gate_decision": decision,
        "gate_reason": reason,
        "gate_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gate_champion_version": old or "",
        "gate_data_version": str(data.version),
        "gate_challenger_ap": f"{challenger_metrics['average_precision']:.6f}",
        "gate_champion_ap": f"{champion_metrics['average_precision']:.6f}"
        if champion_metrics
        else "",
        "gate_backtest": note,
        **splits.test.as_params("gate_window_"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, new, key, value)
    if decision == PROMOTED:
        move_champion(client, name, new, reason)
    return GateDecision(
        decision, reason, new, old, challenger_metrics, champion_metrics, replay, note
    )
