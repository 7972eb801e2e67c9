"""``fraudops stack``: refusals before anything starts, then up, status and down for real.

The stack runs against the machine's PostgreSQL and Redis with its own databases, key prefix
and ports (tests/production/conftest.py). The whole loop through it is
tests/production/test_prod_loop.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli.stack_components import components, databases
from fraudops.environ import settings_env
from tests.production.conftest import require_stack_services, stack_settings

pytestmark = [pytest.mark.services, pytest.mark.e2e]

FRAUDOPS = str(Path(sys.executable).with_name("fraudops"))


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    return subprocess.run(
        [FRAUDOPS, "stack", *args], env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def test_a_taken_port_is_one_clear_line(tmp_path):
    require_stack_services()
    settings = stack_settings(tmp_path / "var")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.stack_s3_port))
        squatter.listen()
        try:
            done = _run(["up"], settings_env(settings))
        finally:
            from cli.stack_components import drop_databases

            drop_databases(settings)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {settings.stack_s3_port}" in lines[0] and "taken" in lines[0]
    assert "FRAUDOPS_STACK_S3_PORT" in lines[0]
    # Nothing was started: no process holds a pid file.
    assert not any(m.pid_file.exists() for m in components(settings))


def test_the_development_key_and_missing_keys_are_refused(tmp_path):
    settings = stack_settings(tmp_path / "var")
    env = settings_env(settings)
    done = _run(["up"], {**env, "FRAUDOPS_SERVING_API_KEYS": '["fraudops-dev-key"]'})
    assert done.returncode == 2
    assert "development key" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = _run(["up"], {**env, "FRAUDOPS_SERVING_API_KEYS": "[]"})
    assert done.returncode == 1
    assert "FRAUDOPS_SERVING_API_KEYS is not set" in done.stderr


def test_the_stack_refuses_the_embedded_profile(tmp_path):
    done = _run(["status"], {"FRAUDOPS_HOME": str(tmp_path / "var")})
    assert done.returncode == 2
    assert "FRAUDOPS_PROFILE=production" in done.stderr


def test_up_starts_every_process_healthy(stack):
    names = [m.name for m in components(stack)]
    assert names == [
        "s3",
        "mlflow",
        "dagster-code-server",
        "dagster-webserver",
        "dagster-daemon",
        "service",
    ]
    for managed in components(stack):
        assert managed.healthy(), managed.name
        assert managed.pid_file.parent == stack.home / "stack"
        assert managed.log_file.exists()
    # The Dagster instance is on PostgreSQL: the webserver reads runs from the stack's database.
    instance = (stack.dagster_home_path / "dagster.yaml").read_text()
    assert "postgres_url" in instance and "DAGSTER_PG_URL" in instance
    assert databases(stack)[0] == stack.dagster_postgres_db
    # The service takes only the keys of the environment.
    score = f"{stack.stack_service_url}/v1/score"
    assert httpx.post(score, json={}, headers={"X-API-Key": "fraudops-dev-key"}).status_code == 401


def test_status_reports_every_process(stack):
    done = _run(["status"], settings_env(stack))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 6
    assert all(" healthy " in line for line in lines), done.stdout


def test_a_second_up_keeps_the_running_processes(stack):
    pids = {m.name: m.process().pid for m in components(stack)}
    done = _run(["up"], settings_env(stack))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("already running") == 6
    assert {m.name: m.process().pid for m in components(stack)} == pids
