"""Monitoring checks, reported with each materialization over every day of the run.

Severities: drift is a warning (the data moved, the model may still be right); a data-quality
failure and performance under the floors are errors (the answers or the data are wrong).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from fraudops.settings import Settings
from monitoring.performance import DayPerformance
from monitoring.production import ProductionInfo
from monitoring.report import DriftReport

QUALITY = "data_quality_within_limits"
DRIFT = "key_features_within_drift_thresholds"
PERFORMANCE = "performance_above_floors"


def quality_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """The data-quality check of the production profile."""
    return dg.AssetCheckSpec(
        QUALITY,
        asset=key,
        description=(
            "Nulls, out-of-range values, degraded answers, unknown entities, implausible "
            "amounts and the share quarantined at ingestion stay within FRAUDOPS_QUALITY_*."
        ),
    )


def quality_result(settings: Settings, infos: list[ProductionInfo]) -> dg.AssetCheckResult:
    """Failed (ERROR) when any day of the run broke a data-quality limit."""
    failures = {i.day.isoformat(): i.quality.failures for i in infos if i.quality.failures}
    return dg.AssetCheckResult(
        check_name=QUALITY,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{d}: {', '.join(f)}" for d, f in failures.items()) or None,
        metadata={
            "failures": dg.MetadataValue.json(failures),
            "days_checked": len(infos),
            "max_null_share": settings.quality_max_null_share,
            "max_degraded_share": settings.quality_max_degraded_share,
        },
    )


def no_traffic_result(days: list[dt.date]) -> dg.AssetCheckResult:
    """Failed (WARN) when no day of the run has traffic: there was nothing to judge."""
    return dg.AssetCheckResult(
        check_name=QUALITY,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"no prediction-log row for {', '.join(map(str, days))}: nothing judged",
        metadata={"days_without_traffic": [d.isoformat() for d in days]},
    )


def drift_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """The drift check of the drift report."""
    return dg.AssetCheckSpec(
        DRIFT,
        asset=key,
        description=(
            "No key feature (FRAUDOPS_DRIFT_KEY_FEATURES, the score included) drifts over its "
            "threshold (FRAUDOPS_DRIFT_THRESHOLD, FRAUDOPS_DRIFT_THRESHOLDS)."
        ),
    )


def drift_result(settings: Settings, reports: list[DriftReport]) -> dg.AssetCheckResult:
    """Failed (WARN) when a key feature of any day of the run drifted."""
    drifted = {
        r.day.isoformat(): {c: round(r.scores[c], 4) for c in r.key_drift}
        for r in reports
        if r.key_drift
    }
    return dg.AssetCheckResult(
        check_name=DRIFT,
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "; ".join(
                f"{d}: {', '.join(f'{c} {s:.3f}' for c, s in cs.items())}"
                for d, cs in drifted.items()
            )
            or None
        ),
        metadata={
            "key_drift": dg.MetadataValue.json(drifted),
            "key_features": settings.drift_key_features,
            "days_checked": len(reports),
        },
    )


def performance_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """The floors check of the delayed-label performance."""
    return dg.AssetCheckSpec(
        PERFORMANCE,
        asset=key,
        description=(
            "On days with at least FRAUDOPS_PERFORMANCE_MIN_FRAUDS frauds: AP no more than "
            "FRAUDOPS_PERFORMANCE_AP_MARGIN below the version's test AP, card precision@100 "
            "at least FRAUDOPS_PERFORMANCE_MIN_CARD_PRECISION."
        ),
    )


def performance_result(settings: Settings, figures: list[DayPerformance]) -> dg.AssetCheckResult:
    """Failed (ERROR) when any day of the run fell under the floors."""
    below = {p.day.isoformat(): p.below_floors(settings) for p in figures}
    below = {day: reasons for day, reasons in below.items() if reasons}
    return dg.AssetCheckResult(
        check_name=PERFORMANCE,
        passed=not below,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{d}: {', '.join(r)}" for d, r in below.items()) or None,
        metadata={
            "below_floors": dg.MetadataValue.json(below),
            "ap_margin": settings.performance_ap_margin,
            "min_frauds": settings.performance_min_frauds,
            "days_checked": len(figures),
        },
    )
