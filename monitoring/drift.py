"""Drift of each model input and of the score: whylogs' own algorithms on two profiles.

The score of a column is whylogs' Hellinger distance (``whylogs.viz.drift``) between the
reference and the day, on histograms read from the two KLL sketches over their common range:
0 for the same distribution, 1 for disjoint ones. It is an effect size, not a test: it does not
grow with the number of rows (a p-value of KS or chi-square tends to 0 on any large day even
for a negligible change), so one threshold means the same on every column and on every day
size, and the score is comparable across columns. Histograms hold at most
:data:`HISTOGRAM_BINS` bins (about four values per bin on small days, whylogs' rule); fewer
bins than whylogs' 30 keep the noise of a few thousand rows well under the default threshold.

A column drifts when its score exceeds its threshold (``drift_thresholds`` per column, else
``drift_threshold``); drift of a key feature (``drift_key_features``, "score" included) is
what may call for retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import Settings
from monitoring.profiles import Profile, import_whylogs

# The columns scored: the model inputs and the score.
DRIFT_COLUMNS = [*FEATURE_COLUMNS, "score"]
HISTOGRAM_BINS = 20
ALGORITHM = "hellinger"


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column: algorithm, score (higher = more drift), threshold, verdict."""

    column: str
    algorithm: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        """Whether the score is over the column's threshold."""
        return self.score > self.threshold


def threshold_for(settings: Settings, column: str) -> float:
    """The drift threshold of ``column`` (its override, else the default)."""
    return float(settings.drift_thresholds.get(column, settings.drift_threshold))


def hellinger(threshold: float):
    """whylogs' Hellinger algorithm with our bins and a two-class threshold."""
    import_whylogs()
    from whylogs.viz.drift.column_drift_algorithms import Hellinger
    from whylogs.viz.drift.configs import DriftThresholds, HellingerConfig

    thresholds = DriftThresholds(NO_DRIFT=(0.0, threshold), DRIFT=(threshold, 1.0))
    return Hellinger(HellingerConfig(max_hist_buckets=HISTOGRAM_BINS, thresholds=thresholds))


def column_drift(
    reference: Profile,
    target: Profile,
    settings: Settings,
    columns: Sequence[str] = DRIFT_COLUMNS,
) -> dict[str, ColumnDrift]:
    """Drift of each of ``columns`` from ``reference`` to ``target``."""
    drifts = {}
    for name in columns:
        threshold = threshold_for(settings, name)
        result = hellinger(threshold).calculate(
            target_column_view=target.column(name),
            reference_column_view=reference.column(name),
            with_thresholds=False,
        )
        if result is None:
            raise ValueError(f"column {name!r} has no numeric values to compare in a profile")
        drifts[name] = ColumnDrift(name, ALGORITHM, float(result.statistic), threshold)
    return drifts


def ranked(drifts: dict[str, ColumnDrift]) -> list[ColumnDrift]:
    """The drifts, most drifted first: by score over threshold (ties by column name), so a
    column with a lenient threshold ranks by how close it is to drifting."""
    return sorted(drifts.values(), key=lambda d: (-d.score / d.threshold, d.column))
