"""The local production stack: which processes, their commands, environments and health checks.

In start order: the S3 stand-in (moto's standalone server), the MLflow tracking server
(backend store on PostgreSQL, artifacts proxied to the object store), the Dagster code server,
webserver and daemon (instance storage on PostgreSQL), and the BentoML scoring service. They
are the processes of ``infra/compose.yaml`` on loopback ports of this machine; PostgreSQL and
Redis are the machine's own servers, which the stack only checks and prepares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from cli.stack_processes import Managed, StackError
from fraudops.environ import settings_env
from fraudops.settings import REPO_ROOT, Settings, with_database

BIN = Path(sys.executable).parent
LOCATION_NAME = "fraudops"
SERVICE = "serving.service:FraudScoring"
# The Dagster instance of the production profile. The queue and run monitoring are those of
# infra/dagster/dagster.yaml; the storage URL comes from the environment (DAGSTER_PG_URL, see
# fraudops.environ.profile_env), so no credential is written to the file.
INSTANCE_MARKER = "# Written by `fraudops stack up`"
INSTANCE_YAML = f"""\
{INSTANCE_MARKER}. Production profile: the instance on PostgreSQL.
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: dagster/backfill
        limit: 1
# A run that fails (its storage lost under it, a node gone) is re-executed from its failure
# by the daemon, so an outage of the storage loses no run.
run_retries:
  enabled: true
  max_retries: 2
"""


# `--db-pool-recycle 0`: the webserver replaces a pooled connection older than 0 s, that is at
# every checkout (Dagster's default is 3600 s; Dagster 1.13's webserver has no pre-ping option).
WEBSERVER_DB_POOL_ARGS = ("--db-pool-recycle", "0")


def stack_dir(settings: Settings) -> Path:
    """Folder of the stack's pid files and logs."""
    return settings.home / "stack"


def _tool(name: str) -> str:
    return str(BIN / name)


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _command_ok(command: list[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def base_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings' (telemetry off, FRAUDOPS_*, Dagster's)."""
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, **settings_env(settings), "PATH": path}


def uses_stand_in(settings: Settings) -> bool:
    """Whether the object store is the stack's own S3 stand-in."""
    return settings.storage_options.get("AWS_ENDPOINT_URL") == settings.stack_s3_endpoint


def uses_mlflow_server(settings: Settings) -> bool:
    """Whether MLflow is the stack's own tracking server."""
    return settings.tracking_uri.rstrip("/") == settings.stack_mlflow_url


def artifacts_destination(settings: Settings) -> str:
    """Where the MLflow server writes artifacts: the object store, or a local folder."""
    if settings.lakehouse_root.startswith("s3://"):
        return f"s3://{settings.s3_bucket}/mlflow"
    return str(settings.home / "mlflow" / "artifacts")


def create_bucket(settings: Settings) -> None:
    """Create the bucket on the stand-in (it checks no signature: a plain PUT creates it)."""
    answer = httpx.put(f"{settings.stack_s3_endpoint}/{settings.s3_bucket}", timeout=10)
    if answer.status_code not in (200, 409):
        raise StackError(f"creating bucket {settings.s3_bucket!r} failed: {answer.status_code}")


def s3_stand_in(settings: Settings) -> Managed:
    """moto's standalone S3 server; it keeps objects in memory, until it stops."""
    return Managed(
        name="s3",
        command=[
            _tool("moto_server"),
            "-H",
            settings.stack_host,
            "-p",
            str(settings.stack_s3_port),
        ],
        env=base_env(settings),
        folder=stack_dir(settings),
        health=lambda: _get_ok(f"{settings.stack_s3_endpoint}/moto-api/"),
        port=settings.stack_s3_port,
        host=settings.stack_host,
        port_setting="FRAUDOPS_STACK_S3_PORT",
        start_timeout_s=60,
        after_start=lambda: create_bucket(settings),
    )


def mlflow_server(settings: Settings) -> Managed:
    """``mlflow server``: runs and registry on PostgreSQL, artifacts through the server."""
    env = {**base_env(settings), "MLFLOW_BACKEND_STORE_URI": settings.mlflow_backend_store_uri}
    endpoint = settings.storage_options.get("AWS_ENDPOINT_URL")
    if endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    host, port = settings.stack_host, settings.stack_mlflow_port
    return Managed(
        name="mlflow",
        command=[
            _tool("mlflow"),
            "server",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "2",
            "--serve-artifacts",
            "--artifacts-destination",
            artifacts_destination(settings),
            "--allowed-hosts",
            f"{host}:{port},localhost:{port}",
        ],
        env=env,
        folder=stack_dir(settings),
        health=lambda: _get_ok(f"{settings.stack_mlflow_url}/health"),
        port=port,
        host=host,
        port_setting="FRAUDOPS_STACK_MLFLOW_PORT",
        start_timeout_s=180,
    )


def workspace_yaml(settings: Settings) -> Path:
    """The workspace of the webserver and the daemon: the code server's gRPC address."""
    return settings.dagster_home_path / "workspace.yaml"


def write_instance(settings: Settings) -> None:
    """Write the production ``dagster.yaml`` and ``workspace.yaml`` into the Dagster home.

    A ``dagster.yaml`` that neither ``fraudops init`` nor the stack wrote is the user's: it is
    not replaced.
    """
    from cli.main import DAGSTER_YAML, RUN_MONITORING_YAML

    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    instance = home / "dagster.yaml"
    if instance.exists():
        text = instance.read_text()
        if text != DAGSTER_YAML and not text.startswith(INSTANCE_MARKER):
            raise StackError(
                f"{instance} was not written by fraudops, so it is not replaced: remove it, "
                "or set FRAUDOPS_DAGSTER_HOME to another folder"
            )
    _write(instance, INSTANCE_YAML + RUN_MONITORING_YAML)
    _write(
        workspace_yaml(settings),
        "load_from:\n"
        "  - grpc_server:\n"
        f"      host: {settings.stack_host}\n"
        f"      port: {settings.stack_code_server_port}\n"
        f"      location_name: {LOCATION_NAME}\n",
    )


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def code_server(settings: Settings, module: str = "orchestration.definitions") -> Managed:
    """``dagster code-server start`` of ``module``: the code location; runs are its subprocesses."""
    env = base_env(settings)
    host, port = settings.stack_host, settings.stack_code_server_port
    return Managed(
        name="dagster-code-server",
        command=[
            _tool("dagster"),
            "code-server",
            "start",
            "-h",
            host,
            "-p",
            str(port),
            "-m",
            module,
            "--location-name",
            LOCATION_NAME,
        ],
        env=env,
        folder=stack_dir(settings),
        health=lambda: _command_ok(
            [_tool("dagster"), "api", "grpc-health-check", "-p", str(port), "-h", host], env
        ),
        port=port,
        host=host,
        port_setting="FRAUDOPS_STACK_CODE_SERVER_PORT",
        cwd=REPO_ROOT,
        start_timeout_s=240,
    )


def dagster_webserver(settings: Settings) -> Managed:
    """``dagster-webserver`` on the workspace of the code server."""
    host, port = settings.stack_host, settings.stack_dagster_port
    return Managed(
        name="dagster-webserver",
        command=[
            _tool("dagster-webserver"),
            "-h",
            host,
            "-p",
            str(port),
            "-w",
            str(workspace_yaml(settings)),
            # Alone of Dagster's processes, the webserver keeps its storage connections in a
            # pool (the daemon and the runs connect per use). A connection PostgreSQL closed
            # (a restart) is found dead only when used, and the request using it fails: a new
            # connection at each checkout, as the daemon does, makes the first request after
            # an outage succeed (tests/production/test_faults_postgres.py).
            *WEBSERVER_DB_POOL_ARGS,
        ],
        env=base_env(settings),
        folder=stack_dir(settings),
        health=lambda: _get_ok(f"http://{host}:{port}/server_info"),
        port=port,
        host=host,
        port_setting="FRAUDOPS_STACK_DAGSTER_PORT",
        cwd=REPO_ROOT,
        start_timeout_s=180,
    )


def dagster_daemon(settings: Settings) -> Managed:
    """``dagster-daemon run``: the run queue, schedules, sensors and run monitoring."""
    env = base_env(settings)
    return Managed(
        name="dagster-daemon",
        command=[_tool("dagster-daemon"), "run", "-w", str(workspace_yaml(settings))],
        env=env,
        folder=stack_dir(settings),
        health=lambda: _command_ok([_tool("dagster-daemon"), "liveness-check"], env),
        cwd=REPO_ROOT,
        start_timeout_s=240,
    )


def scoring_service(settings: Settings) -> Managed:
    """``bentoml serve`` of the scoring service, with the settings' workers."""
    from cli.launcher import bentoml_home

    host, port = settings.stack_host, settings.stack_service_port
    env = {**base_env(settings), "BENTOML_HOME": str(bentoml_home(settings, port))}
    return Managed(
        name="service",
        command=[_tool("bentoml"), "serve", SERVICE, "--host", host, "--port", str(port)],
        env=env,
        folder=stack_dir(settings),
        health=lambda: _get_ok(f"{settings.stack_service_url}/healthz"),
        port=port,
        host=host,
        port_setting="FRAUDOPS_STACK_SERVICE_PORT",
        cwd=REPO_ROOT,
        start_timeout_s=240,
    )


def register_features(settings: Settings) -> None:
    """Apply the Feast definitions (idempotent), so the service finds its feature views."""
    from features.store import apply_definitions, open_store

    apply_definitions(open_store(settings), settings)


def components(settings: Settings) -> list[Managed]:
    """The stack's processes in start order (the stand-in and MLflow only where they are used)."""
    chosen = []
    if uses_stand_in(settings):
        chosen.append(s3_stand_in(settings))
    if uses_mlflow_server(settings):
        chosen.append(mlflow_server(settings))
    chosen += [
        code_server(settings),
        dagster_webserver(settings),
        dagster_daemon(settings),
        scoring_service(settings),
    ]
    return chosen


def component(settings: Settings, name: str) -> Managed:
    """The stack process called ``name``."""
    for managed in components(settings):
        if managed.name == name:
            return managed
    raise StackError(f"the stack has no process {name!r}")


def databases(settings: Settings) -> list[str]:
    """The PostgreSQL databases of the profile: the Dagster instance, MLflow, Feast's registry."""
    from urllib.parse import urlsplit

    feast = urlsplit(settings.postgres_url).path.lstrip("/")
    return [settings.dagster_postgres_db, settings.mlflow_postgres_db, feast]


def _admin_url(settings: Settings) -> str:
    return with_database(settings.postgres_url, "postgres")


def prepare_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns those created."""
    import psycopg

    created = []
    try:
        with psycopg.connect(_admin_url(settings), autocommit=True, connect_timeout=5) as conn:
            for name in databases(settings):
                exists = conn.execute(
                    "select 1 from pg_database where datname = %s", (name,)
                ).fetchone()
                if not exists:
                    conn.execute(f'create database "{name}"')
                    created.append(name)
    except psycopg.OperationalError as exc:
        raise StackError(
            f"PostgreSQL at {_redacted(settings.postgres_url)} does not answer "
            f"({' '.join(str(exc).split())[:160]}): start it or set FRAUDOPS_POSTGRES_URL"
        ) from exc
    return created


def drop_databases(settings: Settings) -> list[str]:
    """Drop the profile's databases (connections are closed first); returns those dropped."""
    import psycopg

    dropped = []
    with psycopg.connect(_admin_url(settings), autocommit=True, connect_timeout=5) as conn:
        for name in databases(settings):
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(f'drop database "{name}" with (force)')
                dropped.append(name)
    return dropped


def check_redis(settings: Settings) -> None:
    """Refuse to start when the online store's Redis does not answer."""
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise StackError(
            f"Redis at {_redacted(settings.redis_url)} does not answer ({exc}): start it or "
            "set FRAUDOPS_REDIS_URL"
        ) from exc


def delete_online_rows(settings: Settings) -> int:
    """Delete the project's keys from Redis (Feast suffixes every key with the project)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    deleted = 0
    for key in client.scan_iter(match=f"*{settings.feast_project}", count=1_000):
        deleted += client.delete(key)
    return deleted


def _redacted(url: str) -> str:
    """``url`` without its password (error messages end up in logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
