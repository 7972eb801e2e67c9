"""The one place that decides every path, URI and knob of the platform.

Values come from environment variables prefixed ``FRAUDOPS_`` with embedded defaults that
describe the embedded profile (local files, DuckDB, SQLite). Nothing is read at import time:
call :func:`get_settings` when a value is needed.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


def _join(root: str, *parts: str) -> str:
    """Join a local path or an object-store URI with sub-paths."""
    return "/".join([root.rstrip("/"), *parts])


def sqlalchemy_url(url: str) -> str:
    """``url`` with an explicit driver: psycopg 3 for PostgreSQL (SQLAlchemy's default driver,
    psycopg2, is not installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Every path, URI and default of the platform, overridable with ``FRAUDOPS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FRAUDOPS_", extra="ignore")

    home: Path = Field(default=REPO_ROOT / "var", description="Root of all runtime state.")
    lakehouse_uri: str | None = Field(
        default=None, description="Root of the Delta tables: a local path or s3://bucket/prefix."
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="deltalake storage options (e.g. S3 endpoint, keys)."
    )
    landing_dir: Path | None = Field(default=None, description="Where source extracts land.")
    source: Literal["simulator", "landing"] = Field(
        default="simulator",
        description="simulator: missing extracts are produced by the simulator; landing: an error.",
    )
    duckdb_path: Path | None = None
    dagster_home: Path | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    feast_online_store: Literal["sqlite", "redis"] = "sqlite"
    feast_registry: Literal["sqlite", "postgres"] = "sqlite"
    feast_project: str = "fraudops"
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/fraudops"
    prediction_log_table: str | None = None

    # Reference scale of the simulated source system (docs/lakehouse.md).
    sim_customers: int = 5_000
    sim_terminals: int = 10_000
    sim_days: int = 183
    sim_start_date: dt.date = dt.date(2018, 4, 1)
    sim_seed: int = 42
    sim_radius: float = 5.0
    label_delay_days: int = 7

    # Data quality: share of quarantined rows above which an asset check fails.
    quarantine_fail_ratio: float = 0.01
    # Volume guard: ingestion refuses a day whose valid rows fall below this share of the
    # median of the last ``volume_trailing_days`` days raw holds (docs/operations.md).
    volume_min_share: float = Field(default=0.5, ge=0.0, le=1.0)
    volume_trailing_days: int = Field(default=7, ge=1)
    # Maintenance (docs/operations.md): the time-travel and audit window. Vacuum deletes the
    # files of versions superseded longer ago than this, which can then no longer be read.
    vacuum_retention_hours: int = Field(default=168, ge=0)

    # Training protocol and promotion gate (docs/training.md).
    model_name: str = "fraud_detector"
    train_days: int = 28
    test_days: int = 7
    train_seed: int = 7
    known_card_memory_days: int = 14
    promotion_ap_margin: float = 0.005
    promotion_min_ap: float = 0.5
    promotion_min_roc_auc: float = 0.8
    promotion_max_p99_ms: float = 25.0
    promotion_manual: bool = False
    mlflow_ui_url: str = "http://127.0.0.1:5000"

    # Online scoring service (docs/serving.md). The default key is for local use only: set
    # FRAUDOPS_SERVING_API_KEYS='["..."]' everywhere else.
    serving_api_keys: list[str] = ["fraudops-dev-key"]
    serving_rate_limit_per_s: float = 2_000.0
    serving_rate_limit_burst: int = 4_000
    serving_max_body_bytes: int = 1_048_576
    serving_max_batch: int = 1_000
    serving_max_amount: float = 1_000_000.0
    serving_review_threshold: float = 0.5
    serving_decline_threshold: float = 0.9
    serving_mode: Literal["champion", "canary", "shadow"] = "champion"
    serving_canary_share: float = 0.1
    serving_feature_timeout_ms: float = 50.0
    # A batch lookup gets this much more per row (a 1,000-row batch: 50 + 500 ms).
    serving_feature_timeout_per_row_ms: float = 0.5
    serving_feature_retry_s: float = 2.0
    # Circuit breaker of the online store (docs/serving.md): it opens when, of the last
    # `window` lookups (at least `min_calls`), this share failed or timed out, or when the last
    # `min_calls` all did; it stays open for serving_feature_retry_s, then probes.
    serving_feature_breaker_window: int = Field(default=20, ge=1)
    serving_feature_breaker_failure_share: float = Field(default=0.5, gt=0.0, le=1.0)
    serving_feature_breaker_min_calls: int = Field(default=5, ge=1)
    serving_feature_repo: Path | None = None
    serving_reload_interval_s: float = 10.0
    serving_log_batch_rows: int = 5_000
    serving_log_flush_s: float = 2.0
    # Durability (docs/serving.md): the local journal, the duplicate window, the fallback model.
    serving_state_dir: Path | None = Field(
        default=None,
        description="Local folder of the journal and the last good champion (home/serving).",
    )
    serving_journal: bool = True
    serving_journal_fsync: bool = True
    serving_log_dedup_rows: int = 200_000

    @cached_property
    def lakehouse_root(self) -> str:
        """Root URI of the Delta lakehouse."""
        return self.lakehouse_uri or str(self.home / "lakehouse")

    def table_uri(self, layer: str, name: str) -> str:
        """URI of the Delta table ``name`` in ``layer`` (raw, quarantine, marts, ...)."""
        return _join(self.lakehouse_root, layer, name)

    @property
    def landing_path(self) -> Path:
        """Folder of the source system's daily extracts."""
        return self.landing_dir or self.home / "landing"

    @property
    def duckdb_file(self) -> Path:
        """DuckDB database file used by dbt."""
        return self.duckdb_path or self.home / "warehouse.duckdb"

    @property
    def dagster_home_path(self) -> Path:
        """Dagster instance folder (run storage, event logs)."""
        return self.dagster_home or self.home / "dagster"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking and registry URI (SQLite file by default), with an explicit driver."""
        uri = self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"
        return sqlalchemy_url(uri)

    @property
    def artifact_root(self) -> str:
        """MLflow artifact root."""
        return self.mlflow_artifact_root or str(self.home / "mlflow" / "artifacts")

    @property
    def prediction_log_uri(self) -> str:
        """Delta table that the scoring service appends predictions to."""
        return self.prediction_log_table or self.table_uri("serving", "prediction_log")

    @property
    def sim_end_date(self) -> dt.date:
        """Last simulated day (inclusive)."""
        return self.sim_start_date + dt.timedelta(days=self.sim_days - 1)


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now, with optional explicit overrides."""
    return Settings(**overrides)
