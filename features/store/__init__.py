"""The Feast feature store of the platform: open, apply, materialize, look up, retrieve.

Plain Python (no Dagster): ``orchestration/defs/features`` and ``serving`` call these functions.
"""

# First, before anything imports Feast: its feature-server metrics stay out of /metrics.
import features.repo.feast_import  # noqa: F401  # isort: split
from features.store.config import (
    FEATURE_REPO,
    ApplyReport,
    apply_definitions,
    definitions_fingerprint,
    open_store,
    render_config,
    repo_variables,
)
from features.store.materialize import (
    MartNotFoundError,
    MaterializationReport,
    latest_materialized,
    materialize_days,
    materialize_pending,
    pending_days,
)
from features.store.online import OnlineFeatures
from features.store.skew import SkewReport, compare_online_offline
from features.store.training import (
    build_training_set,
    historical_features,
    labelled_entities,
    write_training_set,
)

__all__ = [
    "FEATURE_REPO",
    "ApplyReport",
    "MartNotFoundError",
    "MaterializationReport",
    "OnlineFeatures",
    "SkewReport",
    "apply_definitions",
    "build_training_set",
    "compare_online_offline",
    "definitions_fingerprint",
    "historical_features",
    "labelled_entities",
    "latest_materialized",
    "materialize_days",
    "materialize_pending",
    "open_store",
    "pending_days",
    "render_config",
    "repo_variables",
    "write_training_set",
]
