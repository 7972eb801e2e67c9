"""The real service when things go wrong or change: store down, shadow, alias moves, restarts."""

from __future__ import annotations

import time

import httpx
import pytest

from lakehouse.delta import read_table
from tests.serving import fixtures as fx

KEY = "key-ops"
HEADERS = {"X-API-Key": KEY}
WHEN = "2018-05-16T09:30:00Z"
# Transaction ids of the scenario's steps.
RUN1_FIRST, RUN1_POLLS, RUN2_BEFORE, RUN2_BATCH = 1_000, 2_000, 3_000, 4_000


def _score(server, tx_id: int, customer: int = 3, terminal: int = 5) -> httpx.Response:
    row = fx.transaction(tx_id, customer, terminal, 42.0, WHEN)
    return httpx.post(
        f"{server.url}/v1/score", json={"transaction": row}, headers=HEADERS, timeout=60
    )


def _log(server):
    return read_table(f"{server.env['FRAUDOPS_HOME']}/lakehouse/serving/prediction_log")


@pytest.fixture
def shadow_env(tmp_path, registry_copy, unreachable_feast_repo):
    """Shadow mode, the online store down, alias checks every second, a log flushed at exit."""
    return fx.service_env(
        tmp_path / "home",
        registry_copy,
        unreachable_feast_repo,
        serving_api_keys=[KEY],
        serving_mode="shadow",
        serving_reload_interval_s=1.0,
        serving_feature_timeout_ms=200,
        serving_log_flush_s=3_600,
        serving_log_batch_rows=100_000,
    )


def test_store_down_shadow_alias_moves_and_a_graceful_restart(
    start_server, shadow_env, registry_copy
):
    """One scenario (each service start costs seconds): every step checks its own effect."""
    server = start_server(shadow_env)
    # The online store is down: not ready, but answering with the documented fallback.
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    first = _score(server, RUN1_FIRST)
    assert first.status_code == 200
    assert first.json()["degraded"] is True
    assert first.json()["features_as_of"] is None
    assert first.json()["model_version"] == "1"

    # A new champion reaches the running service through the alias watcher.
    fx.set_alias(registry_copy, "champion", 3)
    deadline = time.monotonic() + 60
    version, polls = "1", 0
    while version == "1" and time.monotonic() < deadline:
        time.sleep(0.5)
        polls += 1
        version = _score(server, RUN1_POLLS + polls).json()["model_version"]
    assert version == "3"
    sent = {RUN1_FIRST} | {RUN1_POLLS + i for i in range(1, polls + 1)}

    # Graceful stop flushes the log (its size and time triggers are out of reach here).
    assert server.stop() == 0
    log = _log(server).to_pandas()
    assert set(log["transaction_id"]) == sent
    assert log["degraded"].all()
    assert (log[[c for c in log.columns if c.startswith("customer_id_")]] == 0).all().all()
    # Shadow: the challenger scored every request, the champion answered every one.
    assert (log["routing"] == "shadow").all()
    assert log["challenger_score"].notna().all()
    assert (log["score"] == log["champion_score"]).all()
    assert (log["served_by"] == "champion").all()

    # Restarted without the watcher: the reload endpoint moves the champion at once.
    server = start_server({**shadow_env, "FRAUDOPS_SERVING_RELOAD_INTERVAL_S": "3600"})
    assert _score(server, RUN2_BEFORE).json()["model_version"] == "3"
    fx.set_alias(registry_copy, "champion", 2)
    answer = httpx.post(f"{server.url}/v1/admin/reload", json={}, headers=HEADERS, timeout=60)
    assert answer.status_code == 200
    assert answer.json()["serving"]["champion"] == "2"
    batch = [fx.transaction(RUN2_BATCH + i, 1 + i, 1 + i, 10.0, WHEN) for i in range(30)]
    answer = httpx.post(
        f"{server.url}/v1/score/batch", json={"transactions": batch}, headers=HEADERS, timeout=60
    )
    assert {r["model_version"] for r in answer.json()["results"]} == {"2"}
    assert server.stop() == 0

    # Nothing was lost across the restart.
    ids = set(_log(server).column("transaction_id").to_pylist())
    assert ids == sent | {RUN2_BEFORE} | {RUN2_BATCH + i for i in range(30)}
