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

from pydantic import BaseModel, Field, model_validator
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


# ---- Production profile helpers ----
DEV_API_KEY = "fraudops-dev-key"


def with_database(url: str, database: str) -> str:
    """``url`` (a PostgreSQL URL) naming ``database`` instead of its own."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def production_defaults(settings: Settings) -> dict[str, object]:
    """The defaults ``FRAUDOPS_PROFILE=production`` gives the settings nobody set.

    The object store, MLflow server and ports are the local stack's (``fraudops stack up``);
    its S3 stand-in checks no credentials, so the keys here are placeholders: a real store
    takes FRAUDOPS_STORAGE_OPTIONS from the environment.
    """
    return {
        # A runtime folder of its own: the embedded profile's Dagster instance config, journal
        # and last good model stay the embedded profile's.
        "home": REPO_ROOT / "var" / "production",
        "lakehouse_uri": f"s3://{settings.s3_bucket}/lakehouse",
        "storage_options": {
            "AWS_ENDPOINT_URL": settings.stack_s3_endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            # Safe concurrent Delta commits without a lock service (put-if-absent).
            "aws_conditional_put": "etag",
            "AWS_ACCESS_KEY_ID": "stand-in",
            "AWS_SECRET_ACCESS_KEY": "stand-in",
        },
        "mlflow_tracking_uri": settings.stack_mlflow_url,
        # Artifacts go through the server (--serve-artifacts): clients hold no store keys.
        "mlflow_artifact_root": f"mlflow-artifacts:///{settings.s3_bucket}",
        "mlflow_ui_url": settings.stack_mlflow_url,
        "feast_registry": "postgres",
        "feast_online_store": "redis",
        "postgres_url": with_database(settings.postgres_url, "fraudops_feast"),
        "serving_api_keys": [],
        "serving_workers": 2,
    }


# ---- end Production profile helpers ----


class SimDrift(BaseModel):
    """A drift of the simulated source system (lakehouse/simulator.py ``DriftScenario``)."""

    kind: Literal["new_fraud_pattern", "spending_shift", "broken_field"]
    start: dt.date
    end: dt.date | None = None
    intensity: float = 1.0
    variant: Literal["null_amount", "amount_in_cents"] = "null_amount"


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
    # Drifts of the simulated source, e.g. FRAUDOPS_SIM_DRIFTS='[{"kind": "spending_shift",
    # "start": "2018-10-05", "intensity": 0.5}]' (docs/lakehouse.md).
    sim_drifts: list[SimDrift] = Field(default_factory=list)

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
    # Where the XGBoost candidate's final fit runs: in-process, or on a dask.distributed
    # cluster through xgboost.dask (docs/scale-out.md, step 6). Without a scheduler address the
    # cluster is a LocalCluster of training_dask_workers processes on this machine.
    training_engine: Literal["local", "dask"] = "local"
    training_dask_scheduler: str | None = None
    training_dask_workers: int = Field(default=2, ge=1)
    training_dask_worker_memory: str = "4GiB"

    # Online scoring service (docs/serving.md). The default key is for local use only: set
    # FRAUDOPS_SERVING_API_KEYS='["..."]' everywhere else.
    serving_api_keys: list[str] = ["fraudops-dev-key"]
    # Sized from one worker's measured capacity C (docs/serving.md#sizing-the-rate-limit): a
    # sixth of it per key, a quarter second of that as burst; at a third, one key at full speed
    # took another's p99 past twice its unloaded value.
    serving_rate_limit_per_s: float = Field(default=250.0, gt=0)
    serving_rate_limit_burst: int = Field(default=60, ge=1)
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
    # --- HTTP edge (docs/serving.md#limits-of-the-http-edge) ---
    # Deadlines of a connection: the headers within header_timeout of a request's first byte,
    # the body within body_timeout of the headers; an idle keep-alive connection is closed
    # after keepalive_timeout (a fixed deadline each: trickled bytes do not extend it).
    serving_header_timeout_s: float = Field(default=5.0, gt=0)
    serving_body_timeout_s: float = Field(default=10.0, gt=0)
    serving_keepalive_timeout_s: float = Field(default=5.0, gt=0)
    # Request line + headers: larger or more fields get 431.
    serving_max_header_bytes: int = Field(default=16_384, ge=1_024)
    serving_max_headers: int = Field(default=100, ge=10)
    # Requests in flight (past their headers, probes aside) in one worker, and per API key.
    serving_max_concurrency: int = Field(default=512, ge=1)
    serving_max_in_flight_per_key: int = Field(default=64, ge=1)
    # The per-key rate limit counts tokens: one per started this-many bytes of a request's body
    # (a single transaction costs 1, a batch of 1,000 about 30).
    serving_rate_limit_bytes_per_token: int = Field(default=4_096, ge=256)
    # A rate-limited request's 429 is held this long (a timer, no CPU) before it is sent: a
    # client retrying at once then makes a few refusals a second per connection instead of
    # thousands, which cost the worker the CPU other keys need. 0 answers at once. Kept well
    # under the header and body deadlines, and under Retry-After (at least 1 s) anyway.
    serving_rate_limit_hold_s: float = Field(default=0.5, ge=0.0, le=2.0)
    # Refusals held at once, per key and in the worker (a task and a timer each, and up to
    # 64 KiB of unread body): beyond them the 429 is sent at once and closes its connection.
    serving_rate_limit_max_held_per_key: int = Field(default=64, ge=0)
    serving_rate_limit_max_held: int = Field(default=256, ge=0)
    serving_bentoml_dir: Path | None = Field(
        default=None,
        description="Parent of the per-instance BentoML homes (<serving_state_dir>/bentoml).",
    )
    # --- end HTTP edge ---
    # ---- Fallback model (docs/serving.md, "Degraded mode") ----
    # Degraded rows (online store down, or no row for an entity) are scored by the champion's
    # request-time fallback model (<model_name>_fallback, the version named by the champion's
    # fallback_version tag) when there is one; false: by the champion on the fill values.
    serving_fallback_model: bool = True
    # ---- end Fallback model ----

    # ---- Monitoring (docs/monitoring.md): profiles, drift, data quality, delayed labels ----
    monitoring_dir: Path | None = Field(
        default=None, description="Profiles, drift reports and performance (home/monitoring)."
    )
    # Profiling processes and the rows each profiles at a time (docs/monitoring.md#profiles).
    monitoring_workers: int = Field(default=2, ge=1)
    monitoring_chunk_rows: int = Field(default=250_000, ge=1_000)
    # Drift score: whylogs' Hellinger distance per column (0 same .. 1 disjoint); a column
    # drifts above its threshold; drift of a key feature (or of "score") suggests retraining.
    drift_key_features: list[str] = [
        "tx_amount",
        "tx_during_night",
        "terminal_id_risk_1day_window",
        "terminal_id_risk_7day_window",
        "score",
    ]
    drift_threshold: float = Field(default=0.2, gt=0.0, le=1.0)
    # A day is all weekdays or all weekend: its weekend share against a reference of weeks is
    # 0 or 1 every day, which is the calendar, not drift (a threshold of 1 is never exceeded).
    drift_thresholds: dict[str, float] = Field(default_factory=lambda: {"tx_during_weekend": 1.0})
    # Data-quality limits of one day of the prediction log (shares of its rows).
    quality_max_null_share: float = Field(default=0.01, ge=0.0, le=1.0)
    quality_max_out_of_range_share: float = Field(default=0.001, ge=0.0, le=1.0)
    quality_max_degraded_share: float = Field(default=0.05, ge=0.0, le=1.0)
    quality_max_unknown_entity_share: float = Field(default=0.01, ge=0.0, le=1.0)
    # An amount above this multiple of its card's 30-day mean is implausible (a unit change).
    quality_max_amount_ratio: float = Field(default=25.0, gt=1.0)
    quality_max_implausible_amount_share: float = Field(default=0.05, ge=0.0, le=1.0)
    # Share of the day's source transactions quarantined at ingestion (never sent to scoring).
    quality_max_rejected_share: float = Field(default=0.01, ge=0.0, le=1.0)
    # Delayed-label performance: retraining when the day's AP falls this far below the served
    # version's test AP, judged only on days with at least this many frauds.
    performance_ap_margin: float = Field(default=0.15, ge=0.0, le=1.0)
    performance_min_frauds: int = Field(default=5, ge=1)
    performance_min_card_precision: float = Field(default=0.0, ge=0.0, le=1.0)
    # A fraud scenario caught this rarely (with at least performance_min_frauds frauds that day)
    # is a pattern the model has not learnt, e.g. a new kind of fraud.
    performance_min_scenario_recall: float = Field(default=0.25, ge=0.0, le=1.0)
    # A retrain trains on a window that ends label_delay_days + test_days before its newest
    # labelled day: until a day under the floors lies in that window, a retrain cannot learn
    # what changed, so the performance sensor waits for it (false: request on the first bad day).
    performance_wait_until_learnable: bool = True
    retrain_cooldown_hours: float = Field(default=24.0, ge=0.0)
    # How often the retraining and monitoring-automation sensors tick (the code location reads
    # it when it loads; a closed loop whose days pass in seconds ticks every few seconds).
    monitoring_sensor_interval_s: int = Field(default=30, ge=1)
    # How the runs the retraining sensors request execute their steps: one process per step
    # (isolation, the two candidates in parallel) or all in the run's own process (no start-up
    # of a process per step: the closed loop of the demo and the tests, whose data are small).
    retrain_executor: Literal["multiprocess", "in_process"] = "multiprocess"
    # ---- end Monitoring ----

    # ---- Demo loop (docs/monitoring.md#the-demo-loop): the days `make demo` runs after the
    # live day, through the service, the daily job and the daemon's sensors ----
    # Further simulated days (0: no loop), the loop day the drift starts on (1: the first),
    # which drift of the source system and how strong. A spending shift moves tx_amount, which
    # the drift sensor sees the same day; a new fraud pattern (card testing) moves no key
    # feature and is caught by the performance sensor once its labels arrive, label_delay_days
    # later, after the loop's last day with the defaults.
    demo_loop_days: int = Field(default=3, ge=0)
    demo_loop_drift_from: int = Field(default=2, ge=2)
    demo_loop_drift: Literal["new_fraud_pattern", "spending_shift"] = "spending_shift"
    demo_loop_intensity: float = Field(default=1.0, gt=0.0)
    # The training window of the retrains the loop's sensors request (the demo's first champion
    # trains on train_days): a quarter of the default window, a quarter of the rows to fit,
    # so that a retrain can finish within the demo's minutes on two cores. The
    # loop's day 1 is the demo's live day, served already: the drift starts on day 2 at the
    # earliest, so the log of day 1 holds one version of each transaction.
    demo_loop_train_days: int = Field(default=7, ge=1)
    # ---- end Demo loop ----

    # ---- Retraining checks and the backtest (docs/training.md) ----
    # Asset checks of features/training_set (blocking: no candidate trains on a set failing
    # them): at least this many rows, and a fraud share inside [min, max].
    training_min_rows: int = Field(default=1_000, ge=1)
    training_min_fraud_share: float = Field(default=0.0005, ge=0.0, le=1.0)
    training_max_fraud_share: float = Field(default=0.5, ge=0.0, le=1.0)
    # The gate's backtest: the newest days of logged traffic whose labels are known, replayed
    # through the challenger. A challenger whose AP on them falls more than this below the
    # champion's logged answers is not promoted (1: record the backtest, never veto).
    backtest_days: int = Field(default=7, ge=1)
    promotion_backtest_max_ap_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    # ---- end Retraining checks and the backtest ----

    # ---- Production profile (docs/operations.md, "Production profile") ----
    # production: the same code on services (PostgreSQL, Redis, an S3-compatible object store,
    # the MLflow server, Dagster's daemon). It changes defaults only (PRODUCTION_DEFAULTS):
    # every FRAUDOPS_* value that is set explicitly wins.
    profile: Literal["embedded", "production"] = "embedded"
    # Databases of the Dagster instance and of the MLflow server, on the server of postgres_url
    # (which names the Feast registry's database).
    dagster_postgres_db: str = "fraudops_dagster"
    mlflow_postgres_db: str = "fraudops_mlflow"
    # Bucket of the Delta tables and the MLflow artifacts on the object store.
    s3_bucket: str = "fraudops"
    # Worker processes of the scoring service (None: the decorator's, one).
    serving_workers: int | None = Field(default=None, ge=1)
    # The local stack (`fraudops stack up`): its processes listen on this host and these ports.
    stack_host: str = "127.0.0.1"
    stack_s3_port: int = Field(default=9000, ge=1, le=65535)
    stack_mlflow_port: int = Field(default=5000, ge=1, le=65535)
    stack_dagster_port: int = Field(default=3000, ge=1, le=65535)
    stack_code_server_port: int = Field(default=4000, ge=1, le=65535)
    stack_service_port: int = Field(default=3001, ge=1, le=65535)

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        """Fill the production defaults of the fields nobody set; refuse the development key."""
        if self.profile != "production":
            return self
        for name, value in production_defaults(self).items():
            if name not in self.model_fields_set:
                # Not marked as set: the value stays a default of the profile.
                self.__dict__[name] = value
        if DEV_API_KEY in self.serving_api_keys:
            raise ValueError(
                f"FRAUDOPS_SERVING_API_KEYS holds the development key {DEV_API_KEY!r}, which the "
                "production profile refuses: set FRAUDOPS_SERVING_API_KEYS to your own keys"
            )
        return self

    @property
    def dagster_postgres_url(self) -> str:
        """PostgreSQL URL of the Dagster instance's storage (production profile)."""
        return with_database(self.postgres_url, self.dagster_postgres_db)

    @property
    def mlflow_backend_store_uri(self) -> str:
        """Backend store of the MLflow server (production profile), with an explicit driver."""
        return sqlalchemy_url(with_database(self.postgres_url, self.mlflow_postgres_db))

    @property
    def stack_s3_endpoint(self) -> str:
        """HTTP endpoint of the local stack's S3 stand-in."""
        return f"http://{self.stack_host}:{self.stack_s3_port}"

    @property
    def stack_mlflow_url(self) -> str:
        """HTTP URI of the local stack's MLflow server."""
        return f"http://{self.stack_host}:{self.stack_mlflow_port}"

    @property
    def stack_service_url(self) -> str:
        """Base URL of the local stack's scoring service."""
        return f"http://{self.stack_host}:{self.stack_service_port}"

    # ---- end Production profile ----

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
    def monitoring_path(self) -> Path:
        """Folder of the monitoring profiles, drift reports and performance figures."""
        return self.monitoring_dir or self.home / "monitoring"

    @property
    def sim_end_date(self) -> dt.date:
        """Last simulated day (inclusive)."""
        return self.sim_start_date + dt.timedelta(days=self.sim_days - 1)


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now, with optional explicit overrides."""
    return Settings(**overrides)
