"""Checks of the retraining assets: each candidate's validation AP against the gate's floor."""

import dagster as dg

from fraudops.settings import Settings
from ml.pipeline import Candidate

CANDIDATE_AP = "validation_ap_above_floor"


def candidate_check_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """The check every candidate reports with its materialization."""
    return dg.AssetCheckSpec(
        CANDIDATE_AP,
        asset=key,
        description=(
            "The candidate's validation AP reaches FRAUDOPS_PROMOTION_MIN_AP, the gate's AP floor "
            "(a candidate below it on validation is not expected to pass the gate)."
        ),
    )


def candidate_check_result(candidate: Candidate, settings: Settings) -> dg.AssetCheckResult:
    """Evaluate :func:`candidate_check_spec` for ``candidate``.

    A warning, not an error: one weak family is normal, the gate decides on the selected one.
    """
    floor = settings.promotion_min_ap
    return dg.AssetCheckResult(
        check_name=CANDIDATE_AP,
        passed=candidate.validation_ap >= floor,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"validation AP {candidate.validation_ap:.4f} (floor {floor})",
        metadata={"validation_ap": round(candidate.validation_ap, 6), "floor": floor},
    )
