"""Fixtures of the top layer: a runtime folder of its own, the serving tests' registry and repo."""

import os

import pytest

from tests.serving.conftest import feast_repo, registry, registry_copy, world  # noqa: F401


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A runtime folder of its own; no FRAUDOPS_* or DAGSTER_HOME of the caller leaks in."""
    for name in [k for k in os.environ if k.startswith("FRAUDOPS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FRAUDOPS_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    return tmp_path / "var"
