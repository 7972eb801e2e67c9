"""A broken model version never stops the service: a broken challenger is skipped, a broken
champion falls back to the last one that loaded, and the reload endpoint says what is wrong."""

from __future__ import annotations

import httpx
import pytest

from fraudops.settings import get_settings
from serving.models import ModelSource
from tests.serving import fixtures as fx

KEY = "key-models"
HEADERS = {"X-API-Key": KEY}
WHEN = "2018-05-16T09:30:00Z"


@pytest.fixture
def own_registry(tmp_path, registry) -> str:
    """A copy of the registry with artifacts of its own (they get deleted): champion 1,
    challenger 2, spare 3."""
    return fx.copy_registry(registry, tmp_path / "registry")


def test_a_broken_challenger_is_skipped_with_the_reason(own_registry, tmp_path):
    fx.delete_artifacts(own_registry, 2)
    models = ModelSource(get_settings(home=tmp_path / "home", mlflow_tracking_uri=own_registry))
    assert models.refresh() == {"champion": "1"}
    assert models.get("challenger") is None
    status = models.status()
    assert "version 2" in status["problems"]["challenger"]
    assert status["fallback"] is None
    assert models.champion().version == "1"


def test_an_alias_at_a_missing_version_is_reported(own_registry, tmp_path):
    models = ModelSource(get_settings(home=tmp_path / "home", mlflow_tracking_uri=own_registry))
    models.refresh()
    fx.alias_to_missing_version(own_registry, "champion", 9)
    assert models.refresh() == {}
    status = models.status()
    assert "version 9" in status["problems"]["champion"]
    assert status["fallback"] == {
        "version": "1",
        "source": "registry",
        "wanted": "9",
        "reason": status["problems"]["champion"],
    }


def _score(server, tx_id: int) -> httpx.Response:
    row = fx.transaction(tx_id, 3, 5, 42.0, WHEN)
    return httpx.post(
        f"{server.url}/v1/score", json={"transaction": row}, headers=HEADERS, timeout=60
    )


def _reload(server) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/admin/reload", json={}, headers=HEADERS, timeout=60)


def test_broken_versions_do_not_stop_the_service(start_server, own_registry, tmp_path, feast_repo):
    """One scenario, two starts: a broken challenger, then a broken champion, then reloads."""
    env = fx.service_env(tmp_path / "home", own_registry, feast_repo, serving_api_keys=[KEY])
    fx.delete_artifacts(own_registry, 2)
    server = start_server(env)  # champion mode: the challenger would answer nothing anyway
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["serving"] == {"champion": {"version": "1", "source": "registry"}}
    assert "version 2" in ready.json()["problems"]["challenger"]
    assert server.stop() == 0

    # The champion's artifacts are gone too: the copy kept at the last start answers.
    fx.delete_artifacts(own_registry, 1)
    server = start_server(env)
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    fallback = ready.json()["fallback"]
    assert (fallback["version"], fallback["source"], fallback["wanted"]) == ("1", "last_good", "1")
    assert "version 1" in fallback["reason"]
    answer = _score(server, 1)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"

    # An alias at a version the registry does not have is an error, not "nothing changed".
    fx.alias_to_missing_version(own_registry, "champion", 9)
    reload = _reload(server)
    assert reload.status_code == 409
    assert "version 9" in reload.json()["error"]
    assert reload.json()["serving"]["champion"] == "1"
    assert _score(server, 2).json()["model_version"] == "1"

    # A version that loads ends the fallback.
    fx.set_alias(own_registry, "champion", 3)
    reload = _reload(server)
    assert reload.status_code == 200
    assert reload.json()["changed"] == {"champion": "3"}
    assert httpx.get(f"{server.url}/readyz").json()["fallback"] is None
    assert _score(server, 3).json()["model_version"] == "3"
