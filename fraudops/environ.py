"""The process environment: telemetry off, and the settings handed to subprocesses.

Dagster, dbt, Feast's CLI and BentoML run in processes of their own that read the settings
from ``FRAUDOPS_*`` variables: :func:`settings_env` is the one place that writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fraudops.settings import Settings

# The opt-outs each library reads (checked in their sources): nothing leaves the machine.
TELEMETRY_OFF = {
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "WHYLOGS_NO_ANALYTICS": "true",
}
# Telemetry off, and no progress bars of artifact downloads in the demo's and Dagster's logs.
PROCESS_DEFAULTS = {**TELEMETRY_OFF, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def set_process_defaults() -> None:
    """Set :data:`PROCESS_DEFAULTS` in this process (values the user set are kept)."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """Variables that make ``get_settings()`` in a subprocess equal ``settings``.

    Locations are written resolved (the lakehouse root, the DuckDB file, ...), so tools that
    read a variable directly, such as dbt's profiles.yml, see the same paths; the telemetry
    opt-outs, the other process defaults and ``DAGSTER_HOME`` come along.
    """
    values = settings.model_dump(mode="json", exclude_none=True)
    values |= {
        "lakehouse_uri": settings.lakehouse_root,
        "landing_dir": str(settings.landing_path),
        "duckdb_path": str(settings.duckdb_file),
        "dagster_home": str(settings.dagster_home_path),
        "mlflow_tracking_uri": settings.tracking_uri,
        "mlflow_artifact_root": settings.artifact_root,
        "prediction_log_table": settings.prediction_log_uri,
    }
    env = {f"FRAUDOPS_{name.upper()}": _text(value) for name, value in values.items()}
    return {
        **PROCESS_DEFAULTS,
        **env,
        "DAGSTER_HOME": str(settings.dagster_home_path),
        **profile_env(settings),
    }


# ---- Production profile ----
# The scoring service's name in its decorator (serving/service.py), which BentoML's
# configuration is keyed by (tests/production/test_settings_profile.py checks the two agree).
SCORING_SERVICE_NAME = "fraud_scoring"


def profile_env(settings: Settings) -> dict[str, str]:
    """Variables the tools read directly: the service's workers, the Dagster instance's URL,
    the object store's options.

    ``BENTOML_CONFIG_OVERRIDES`` sets the number of workers of the scoring service where the
    settings name one; ``DAGSTER_PG_URL`` is the instance storage that the production
    ``dagster.yaml`` (``fraudops stack up``) reads, so no credential is written to a file.
    """
    env: dict[str, str] = {}
    if settings.serving_workers is not None:
        overrides = {"services": {SCORING_SERVICE_NAME: {"workers": settings.serving_workers}}}
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    if settings.profile == "production":
        env["DAGSTER_PG_URL"] = settings.dagster_postgres_url
    if settings.lakehouse_root.startswith("s3://"):
        # The object store's options also as AWS_* variables, for readers that take no
        # storage options (boto3 in the MLflow server, Feast's file offline store).
        for key, value in settings.storage_options.items():
            if key.lower().startswith("aws_"):
                env[key.upper()] = value
    return env


# ---- end Production profile ----


@contextmanager
def exported(updates: Mapping[str, str]) -> Iterator[None]:
    """Set ``updates`` in ``os.environ`` for the block, then restore what was there before."""
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
