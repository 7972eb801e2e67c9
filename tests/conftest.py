"""Shared fixtures: a tiny simulated lakehouse and the real services of the production profile."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from fraudops.environ import set_process_defaults
from fraudops.settings import Settings, get_settings
from lakehouse.ingestion import Lakehouse, ingest_simulation

TINY = {"sim_customers": 60, "sim_terminals": 120, "sim_days": 45}


# Variables a caller (e.g. `make test`, which exports FRAUDOPS_HOME) passes down that would make
# the tests depend on where they were started from.
_INHERITED = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")


@pytest.fixture(autouse=True, scope="session")
def _hermetic_process() -> None:
    """No telemetry, and none of the caller's FRAUDOPS_* or make variables."""
    for name in [n for n in os.environ if n.startswith("FRAUDOPS_") or n in _INHERITED]:
        del os.environ[name]
    set_process_defaults()


@pytest.fixture
def tmp_settings(tmp_path) -> Settings:
    """Tiny-scale settings in a fresh folder (function scope: free to mutate)."""
    return get_settings(home=tmp_path / "var", **TINY)


@pytest.fixture(scope="session")
def tiny_lakehouse(tmp_path_factory) -> Lakehouse:
    """A lakehouse with every raw table ingested for the whole tiny simulation (read-only)."""
    settings = get_settings(home=tmp_path_factory.mktemp("tiny") / "var", **TINY)
    return ingest_simulation(settings)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is down, but fail under CI, where it must be running."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI=true: service-dependent tests must not skip)")
    pytest.skip(message)


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL database on the local server, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import uuid

    import psycopg

    name = f"fraudops_test_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The local Redis URL; each test uses its own key prefix (e.g. a unique Feast project)."""
    require_service("Redis", "127.0.0.1", 6379)
    yield "redis://127.0.0.1:6379/0"
