"""Serving fixtures: reference features, a registry with two versions, a Feast repo."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cli.launcher import ServiceProcess
from tests.serving import fixtures as fx


@pytest.fixture(scope="session")
def world(tiny_lakehouse) -> fx.TinyWorld:
    """Reference features of the tiny lakehouse (features/definitions.py)."""
    return fx.build_world(tiny_lakehouse.settings)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, world) -> str:
    """A SQLite MLflow registry: version 1 is champion, version 2 challenger, 3 spare."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fx.register_versions(uri, root, world, [1.0, 0.001, 0.05])
    fx.set_alias(uri, "champion", 1)
    fx.set_alias(uri, "challenger", 2)
    return uri


@pytest.fixture
def registry_copy(registry, tmp_path) -> str:
    """An independent copy of the registry (aliases can move without touching the original)."""
    source = Path(registry.removeprefix("sqlite:///"))
    target = tmp_path / "mlflow.db"
    shutil.copy(source, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def feast_repo(tmp_path_factory, world) -> Path:
    """A Feast repo whose SQLite online store holds the features as of the last day's end."""
    return fx.build_feast_repo(tmp_path_factory.mktemp("feast") / "repo", world)


@pytest.fixture
def unreachable_feast_repo(feast_repo, tmp_path) -> Path:
    """The same repo, but its online store is a Redis server that is not there."""
    repo = tmp_path / "feast_down"
    shutil.copytree(feast_repo, repo)
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["online_store"] = {
        "type": "redis",
        "connection_string": f"127.0.0.1:{fx.free_port()}",
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return repo


@pytest.fixture
def start_server() -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    """Start real services; every one still running is stopped (gracefully) afterwards."""
    servers: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        server = fx.server_process(env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
