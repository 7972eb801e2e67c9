"""No silent loss: answered predictions survive ``kill -9``; retries are logged once."""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import numpy as np
import pytest

from tests.serving import fixtures as fx

KEY = "key-durability"
HEADERS = {"X-API-Key": KEY}
WHEN = "2018-05-16T09:30:00Z"
CLIENTS = 8
# What each kill takes down: all of the service's processes, or only its worker (BentoML's
# arbiter then starts a new worker on the same port). Each round costs a service start
# (20-30 s on a busy 2-core machine), so the test does one of each.
KILLS = ("process group", "worker")


def _service_env(tmp_path, registry, feast_repo, **overrides):
    return fx.service_env(
        tmp_path / "home",
        registry,
        feast_repo,
        serving_api_keys=[KEY],
        serving_rate_limit_per_s=1e9,
        serving_rate_limit_burst=10**9,
        serving_feature_timeout_ms=2_000,
        serving_mode="canary",
        serving_canary_share=0.3,
        **overrides,
    )


def _row(tx_id: int) -> dict:
    return fx.transaction(tx_id, 1 + tx_id % 60, 1 + tx_id % 120, 10.0 + tx_id % 200, WHEN)


class Load:
    """``CLIENTS`` threads sending fresh transaction ids until stopped; the ids answered 200."""

    def __init__(self, url: str, first_id: int) -> None:
        self.url = url
        self.answered: set[int] = set()
        self._ids = itertools.count(first_id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, headers=HEADERS, timeout=30) as client:
            while not self._stop.is_set():
                with self._lock:
                    tx_id = next(self._ids)
                try:
                    answer = client.post("/v1/score", json={"transaction": _row(tx_id)})
                except httpx.HTTPError:  # the service was killed under this request
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.answered.add(tx_id)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, answered: int, timeout: float = 60.0) -> None:
        """Block until ``answered`` requests were answered (mid-load: keep sending)."""
        deadline = time.monotonic() + timeout
        while len(self.answered) < answered:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answers"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _logged(env, expected: set[int], timeout: float = 60.0):
    """The prediction log once it holds ``expected`` (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        log = fx.prediction_log(env)
        if expected <= set(log["transaction_id"]) or time.monotonic() > deadline:
            return log
        time.sleep(0.3)


def _wait_for_new_worker(server, old: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no new worker answered"
        workers = fx.worker_pids(server)
        if workers and old not in workers:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)


def test_answered_rows_survive_kills_exactly_once(start_server, tmp_path, registry, feast_repo):
    """Kill the service under load, restart, repeat: every 200 is in the log exactly once."""
    env = _service_env(tmp_path, registry, feast_repo)
    server = start_server(env)
    answered: set[int] = set()
    report = []
    for round_, kill in enumerate(KILLS):
        with Load(server.url, first_id=(round_ + 1) * 1_000_000) as load:
            # Mid-load: past several micro-batches, well inside one log flush period (2 s).
            load.wait_for(150 + 50 * round_)
            if kill == "worker":
                killed = fx.kill_worker(server)
            else:
                fx.kill_tree(server)
        answered |= load.answered
        if kill == "worker":
            _wait_for_new_worker(server, killed)
        else:
            server = start_server(env)
        log = _logged(env, answered)
        lost = answered - set(log["transaction_id"])
        report.append(f"{kill} kill: {len(load.answered)} answered, {len(lost)} lost")
        assert not lost, "; ".join(report)

    # Clients retry what they did not see answered, and some of what they did: no second row.
    retried = sorted(answered)[::50]
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        for tx_id in retried:
            assert client.post("/v1/score", json={"transaction": _row(tx_id)}).status_code == 200
        sentinel = 9_999_999
        assert client.post("/v1/score", json={"transaction": _row(sentinel)}).status_code == 200
    log = _logged(env, answered | {sentinel})  # the sentinel's flush also took the retries
    counts = log.groupby(["transaction_id", "served_by"]).size()
    assert counts.max() == 1, counts[counts > 1].head()
    assert log["transaction_id"].is_unique
    print("; ".join(report))


@pytest.fixture
def quick_log_server(start_server, tmp_path, registry, feast_repo):
    env = _service_env(tmp_path, registry, feast_repo, serving_log_flush_s=0.3)
    return start_server(env), env


def test_retries_and_repeated_ids_are_logged_once(quick_log_server):
    server, env = quick_log_server
    scores = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        for _ in range(3):  # a client retrying after its own timeout
            answer = client.post("/v1/score", json={"transaction": _row(10)})
            assert answer.status_code == 200
            scores.append(answer.json()["score"])
        batch = [_row(11), _row(12), _row(11), _row(10)]
        assert client.post("/v1/score/batch", json={"transactions": batch}).status_code == 200
        # Sent last: once it is logged, so is everything queued before it.
        assert client.post("/v1/score", json={"transaction": _row(13)}).status_code == 200
    log = _logged(env, {13})
    assert sorted(log["transaction_id"]) == [10, 11, 12, 13]
    first = log.loc[log["transaction_id"] == 10, "score"].item()
    assert first == pytest.approx(scores[0])
    assert np.allclose(scores, scores[0])  # same model, same features: the same answer
