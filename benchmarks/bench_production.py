"""Scoring through the production profile against the embedded profile, in the same run.

Two services on loopback score the same requests (``/v1/score``, closed loop at concurrency 8
and 32, every request a transaction id of its own): the embedded profile (SQLite online
store, one worker) and the production profile (``FRAUDOPS_PROFILE=production``: Redis online
store, its default of two workers). A third, the production profile with one worker, separates
what Redis costs from what the second worker brings. The Redis is a private ``redis-server``
on a free port, so the machine's own is untouched.

The sandbox is bench_serving's: the tiny simulated lakehouse, the reference features of its
last day in the online store, an XGBoost ScoringModel pyfunc as champion in a SQLite MLflow
registry. Both profiles read that registry and keep their prediction log in local Delta: the
comparison is of the scoring path (online store and workers), not of the object store.
``--seconds`` shortens every phase.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from benchmarks.bench_serving import KEY, _bodies, _Ids, _requests, champion_world
from benchmarks.common import write_figures
from benchmarks.loadgen import closed_loop
from cli.launcher import free_port
from tests.serving import fixtures as fx

CONCURRENCY = (8, 32)
SINGLE_PER_S = 3_000


def _redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url).ping()
            return process, f"127.0.0.1:{port},db=0"
        except redis.RedisError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start")


def _service_env(root: Path, name: str, uri: str, repo: Path, **values: object) -> dict:
    return fx.service_env(
        root / name,
        uri,
        repo,
        serving_api_keys=[KEY],
        serving_rate_limit_per_s=1e9,
        serving_rate_limit_burst=10**9,
        # Explicit, so the production profile keeps the prediction log and the registry local.
        lakehouse_uri=str(root / name / "lakehouse"),
        storage_options={},
        **values,
    )


def _run(root: Path, seconds: float) -> dict:
    uri, world = champion_world(root)
    redis_process, connection = _redis(root)
    try:
        sqlite_repo = fx.build_feast_repo(root / "feast-sqlite", world)
        redis_repo = fx.build_feast_repo(
            root / "feast-redis", world, {"type": "redis", "connection_string": connection}
        )
        variants = {
            "embedded": _service_env(root, "embedded", uri, sqlite_repo),
            "production": _service_env(root, "production", uri, redis_repo, profile="production"),
            "production_1_worker": _service_env(
                root, "production_1", uri, redis_repo, profile="production", serving_workers=1
            ),
        }
        bodies = _bodies(world, 2_000)
        ids = _Ids()
        figures: dict = {"seconds_per_phase": seconds, "cores": os.cpu_count()}
        for name, env in variants.items():
            server = fx.server_process(env).start(timeout=300)
            try:
                url = f"{server.url}/v1/score"
                # Warm-up: models, connections and the online store's first reads.
                uvloop.run(closed_loop(url, _requests(url, bodies, ids.block(200), 200), 4, 2.0))
                for c in CONCURRENCY:
                    n = int(seconds * SINGLE_PER_S)
                    requests = _requests(url, bodies, ids.block(n), n)
                    figures[f"{name}_c{c}"] = uvloop.run(closed_loop(url, requests, c, seconds))
                    print(f"{name} c{c}: {figures[f'{name}_c{c}']}", flush=True)
            finally:
                server.stop()
    finally:
        redis_process.send_signal(signal.SIGTERM)
        redis_process.wait(timeout=30)
    for c in CONCURRENCY:
        base = figures[f"embedded_c{c}"]["throughput_rps"]
        for name in ("production", "production_1_worker"):
            ratio = figures[f"{name}_c{c}"]["throughput_rps"] / base if base else None
            figures[f"{name}_c{c}_vs_embedded"] = round(ratio, 2) if ratio else None
            print(f"{name} c{c} / embedded c{c}: {figures[f'{name}_c{c}_vs_embedded']}x")
    path = write_figures("production", figures)
    print(f"figures in {path}")
    return figures


def main(seconds: float = 15.0) -> dict:
    """Build the sandbox, score through both profiles, print and write the figures."""
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-production-"))
    try:
        return _run(root, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    main(parser.parse_args().seconds)
