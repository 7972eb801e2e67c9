"""The kill loop: ``kill -9`` the real service under load, restart it, count what the log lost.

Shared by ``tests/serving/test_kill_loop.py`` (3 kills, a small load) and
``benchmarks/bench_kill.py`` (more kills, more clients). Clients behave like real ones: each
sends fresh transaction ids, retries an id until it is answered 200 (through the kills and
restarts), and now and then re-sends an id already answered (a client whose answer timed out).
After the last restart the service keeps running; the figures are the acknowledged ids missing
from the Delta prediction log, and the rows beyond one per (transaction_id, served_by).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cli.launcher import ServiceProcess, free_port
from tests.serving import fixtures as fx

WHEN = "2018-05-16T09:30:00Z"
# One request in this many re-sends an id already answered.
RESEND_EVERY = 10


def transaction(tx_id: int, customers: int = 60, terminals: int = 120) -> dict:
    """A request transaction whose entities exist in the sandbox."""
    return fx.transaction(
        tx_id, 1 + tx_id % customers, 1 + tx_id % terminals, 10.0 + tx_id % 200, WHEN
    )


class Clients:
    """``n`` client threads sending until stopped; every id answered 200, and the re-sends."""

    def __init__(self, url: str, key: str, n: int, first_id: int, seed: int = 0) -> None:
        self.url = url
        self.headers = {"X-API-Key": key}
        self.answered: set[int] = set()
        self.resent = 0
        self.errors = 0
        self._ids = itertools.count(first_id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(random.Random(seed + i),), daemon=True)
            for i in range(n)
        ]

    def _next(self, rng: random.Random) -> tuple[int, bool]:
        with self._lock:
            if self.answered and rng.randrange(RESEND_EVERY) == 0:
                self.resent += 1
                return rng.choice(tuple(self.answered)), True
            return next(self._ids), False

    def _client(self, rng: random.Random) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not self._stop.is_set():
                tx_id, _ = self._next(rng)
                # Until answered: a kill mid-request, or a service still starting, is retried.
                while not self._stop.is_set():
                    try:
                        answer = client.post("/v1/score", json={"transaction": transaction(tx_id)})
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        with self._lock:
                            self.answered.add(tx_id)
                        break
                    with self._lock:
                        self.errors += 1
                    time.sleep(0.05)

    def start(self) -> Clients:
        """Start every client thread."""
        for thread in self._threads:
            thread.start()
        return self

    def count(self) -> int:
        """Ids answered 200 so far."""
        with self._lock:
            return len(self.answered)

    def wait_for(self, answered: int, timeout: float) -> None:
        """Block until ``answered`` ids are answered (the load keeps going)."""
        deadline = time.monotonic() + timeout
        while self.count() < answered:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} of {answered} answers in {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop sending and wait for the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@dataclass
class KillReport:
    """What a kill loop found."""

    kills: int
    answered: int
    resent: int
    missing: int
    duplicates: int
    log_rows: int
    client_errors: int
    # From each kill until the service answered again.
    restart_seconds: list[float] = field(default_factory=list)
    answered_per_round: list[int] = field(default_factory=list)


def _log_when_complete(env: dict[str, str], expected: set[int], timeout: float):
    """The prediction log once it holds every id of ``expected`` (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        log = fx.prediction_log(env)
        if expected <= set(log["transaction_id"]) or time.monotonic() > deadline:
            return log
        time.sleep(0.3)


def _wait_for_new_worker(server: ServiceProcess, old: set[int], timeout: float) -> None:
    """Until a worker other than ``old`` answers ``/readyz`` 200 (BentoML's arbiter starts it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = fx.worker_pids(server)
        if workers and not workers & old:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"no new worker answered within {timeout:.0f} s")


def _kill(server: ServiceProcess, what: str, env, log_path, port, timeout) -> ServiceProcess:
    """``kill -9`` the service (``tree``: every process, then a restart; ``worker``: the worker
    only, which the arbiter replaces) and return the service once it answers again."""
    if what == "worker":
        old = fx.worker_pids(server)
        fx.kill_worker(server)
        _wait_for_new_worker(server, old, timeout)
        return server
    fx.kill_tree(server)
    return ServiceProcess(env, log_path, port=port).start(timeout=timeout)


def kill_loop(
    env: dict[str, str],
    key: str,
    kills: list[str],
    clients: int,
    answers_per_round: int,
    seed: int = 0,
    round_timeout: float = 180.0,
) -> KillReport:
    """Start the service and kill it under load once per item of ``kills`` (``tree`` or
    ``worker``), each time waiting until it answers again."""
    rng = random.Random(seed)
    port = free_port()
    log_path = Path(env["FRAUDOPS_HOME"]) / f"server-{port}.log"
    # The same port across restarts: the clients keep their base URL and retry through.
    server = ServiceProcess(env, log_path, port=port).start()
    load = Clients(server.url, key, clients, first_id=1_000_000, seed=seed).start()
    restarts, per_round = [], []
    try:
        for what in kills:
            before = load.count()
            # Kill at a different point of the log's flush period each time.
            target = before + answers_per_round + rng.randrange(answers_per_round)
            load.wait_for(target, round_timeout)
            started = time.monotonic()
            server = _kill(server, what, env, log_path, port, round_timeout)
            restarts.append(round(time.monotonic() - started, 1))
            per_round.append(load.count() - before)
        # Some load on the last service too, then quiet.
        load.wait_for(load.count() + answers_per_round, round_timeout)
    finally:
        load.stop()
    try:
        answered = set(load.answered)
        log = _log_when_complete(env, answered, timeout=60.0)
        missing = answered - set(log["transaction_id"])
        rows_per_key = log.groupby(["transaction_id", "served_by"]).size()
    finally:
        server.stop()
    return KillReport(
        kills=len(kills),
        answered=len(answered),
        resent=load.resent,
        missing=len(missing),
        duplicates=int((rows_per_key - 1).sum()),
        log_rows=len(log),
        client_errors=load.errors,
        restart_seconds=restarts,
        answered_per_round=per_round,
    )
