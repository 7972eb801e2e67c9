"""The top layer drives the real service: it reuses the serving tests' registry and Feast repo."""

from tests.serving.conftest import feast_repo, registry, world  # noqa: F401
