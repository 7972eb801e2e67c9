"""Orchestration fixtures: a tiny home whose settings the Dagster runs read from the env."""

import pytest

from fraudops.environ import settings_env
from fraudops.settings import get_settings


@pytest.fixture
def tiny_home(tmp_settings, monkeypatch):
    """Tiny settings exported as the environment, and read back as Dagster's runs will."""
    for key, value in settings_env(tmp_settings).items():
        monkeypatch.setenv(key, value)
    return get_settings()
