"""A private production stack for these tests: own databases, Redis key prefix, ports, home.

Its PostgreSQL databases carry a unique suffix and are dropped afterwards, its Feast project
(the prefix of its Redis keys) is unique and its keys are deleted; the S3 stand-in and the
MLflow server are the stack's own processes. PostgreSQL and Redis are the machine's servers:
under CI a missing one fails the tests (``require_service``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.launcher import free_port
from fraudops.settings import Settings, get_settings
from tests.conftest import TINY, require_service

# A training window the tiny simulation holds, and a gate that promotes any challenger: the
# tests are about the stack and the loop, not about which model wins (tests/cli/test_loop.py
# takes the gate from here): a negative AP margin and open floors promote every challenger.
PROTOCOL = {"train_days": 12, "test_days": 7, "known_card_memory_days": 0}
GATE_OPEN = {
    "promotion_ap_margin": -1.0,
    "promotion_min_ap": 0.0,
    "promotion_min_roc_auc": 0.0,
    "promotion_max_p99_ms": 10_000.0,
    "promotion_backtest_max_ap_drop": 1.0,
}


def require_stack_services() -> None:
    """PostgreSQL and Redis on their standard loopback ports (CI: fail, never skip)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)


def stack_settings(home: Path, **values: object) -> Settings:
    """Production-profile settings on free ports, with unique database names and prefix."""
    suffix = uuid.uuid4().hex[:8]
    return get_settings(
        profile="production",
        home=home,
        serving_api_keys=[f"test-key-{suffix}"],
        dagster_postgres_db=f"fraudops_dagster_{suffix}",
        mlflow_postgres_db=f"fraudops_mlflow_{suffix}",
        postgres_url=f"postgresql://postgres@127.0.0.1:5432/fraudops_feast_{suffix}",
        feast_project=f"fraudops_{suffix}",
        stack_s3_port=free_port(),
        stack_mlflow_port=free_port(),
        stack_dagster_port=free_port(),
        stack_code_server_port=free_port(),
        stack_service_port=free_port(),
        # The alias watcher and the breaker's probe on test time.
        serving_reload_interval_s=2.0,
        serving_feature_retry_s=1.0,
        **{**TINY, **PROTOCOL, **GATE_OPEN, **values},
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Settings]:
    """A running production stack at tiny scale, shared by the session's production tests;
    stopped and purged afterwards."""
    require_stack_services()
    from cli.stack import bring_down, bring_up, purge

    root = tmp_path_factory.mktemp("stack")
    settings = stack_settings(root / "var")
    try:
        bring_up(settings)
        yield settings
    finally:
        bring_down(settings)
        # The processes' logs outlive the purge, for a failed test's post-mortem.
        shutil.copytree(settings.home / "stack", root / "logs", dirs_exist_ok=True)
        purge(settings)


@pytest.fixture(scope="session")
def demo_result(stack) -> dict:
    """The whole loop, run once through the stack: ingest, dbt, Feast, train, promote, serve."""
    from cli.prod_demo import run_prod_demo

    return run_prod_demo(stack, print, live_limit=300)


class RedisServer:
    """A private ``redis-server`` on a free port (the machine's own is never stopped)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (append-only file in its folder, so a restart keeps the online rows)."""
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed (CI=true: must not skip)")
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"),
                *("--save", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        """Stop it (SIGTERM: it writes its append-only file and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    """A private Redis server, stopped afterwards."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
