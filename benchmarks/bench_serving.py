"""Online scoring on loopback: latency and throughput of the real service, and two baselines.

Phases (closed loop = N clients each waiting for its answer; open loop = requests sent on a
fixed schedule, latency counted from the scheduled send time so queueing is not hidden):
``/v1/score`` closed loop at concurrency 1, 8 and 32; open loop at 200 requests/s;
``/v1/score/batch`` (1,000 transactions per request) closed loop at concurrency 2.
Baselines in the same run: in-process feature lookup + predict (no HTTP) and a trivial BentoML
echo service with the same schema. Targets (issue 6, 2 cores): >= 300 requests/s at
concurrency 8 and at least half the echo service's; p99 <= 50 ms at 200 requests/s; zero
errors; >= 20,000 transactions/s in batches.

The sandbox is built like the serving tests': the tiny simulated lakehouse, reference
features from ml/features.py in a SQLite Feast online store, and as champion in a SQLite MLflow
registry the production model type (an XGBoost ScoringModel pyfunc, trained on the tiny data).
``--seconds`` shortens every phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import uvloop

from benchmarks.common import write_figures
from benchmarks.loadgen import closed_loop, encode_post, open_loop
from fraudops.settings import get_settings
from lakehouse.ingestion import ingest_simulation
from tests.serving import fixtures as fx

KEY = "bench-key"
HEADERS = {"X-API-Key": KEY}
SIM = {"sim_customers": 500, "sim_terminals": 1_000, "sim_days": 40}


def _sandbox(root: Path) -> tuple[dict[str, str], fx.TinyWorld]:
    settings = get_settings(home=root / "lake", **SIM)
    ingest_simulation(settings)
    world = fx.build_world(settings)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fx.register_scoring_model(uri, root, world)
    fx.set_alias(uri, "champion", 1)
    repo = fx.build_feast_repo(root / "feast", world)
    env = fx.service_env(
        root / "service",
        uri,
        repo,
        serving_api_keys=[KEY],
        serving_rate_limit_per_s=1e9,
        serving_rate_limit_burst=10**9,
    )
    return env, world


def _bodies(world: fx.TinyWorld, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    customers = world.customer_features["customer_id"].unique()
    terminals = world.terminal_features["terminal_id"].unique()
    when = (world.last_as_of + dt.timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        fx.transaction(
            f"bench-{i}",
            int(rng.choice(customers)),
            int(rng.choice(terminals)),
            float(round(rng.uniform(1, 250), 2)),
            when,
        )
        for i in range(n)
    ]


def _in_process_p50(env: dict[str, str], bodies: list[dict]) -> float:
    from serving.runtime import ScoringRuntime
    from serving.schemas import ScoreRequest

    settings = get_settings(
        home=Path(env["FRAUDOPS_HOME"]) / "in_process",
        mlflow_tracking_uri=env["FRAUDOPS_MLFLOW_TRACKING_URI"],
        serving_feature_repo=env["FRAUDOPS_SERVING_FEATURE_REPO"],
        serving_feature_timeout_ms=1_000,
    )
    runtime = ScoringRuntime(settings)
    transactions = [
        ScoreRequest.model_validate_json(json.dumps({"transaction": body})).transaction
        for body in bodies[:300]
    ]
    times = []
    for tx in transactions:
        started = time.perf_counter()
        runtime.score([tx])
        times.append(time.perf_counter() - started)
    runtime.close()
    return round(statistics.median(times[20:]) * 1000.0, 3)


def _record(figures: dict, name: str, phase) -> None:
    figures[name] = uvloop.run(phase)
    print(f"{name}: {figures[name]}", flush=True)


def main(seconds: float = 20.0) -> dict:
    """Build the sandbox, run every phase, print and write the figures."""
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-serving-"))
    try:
        return _run(root, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _requests(url: str, bodies: list[dict]) -> list[bytes]:
    return [encode_post(url, {"transaction": body}, HEADERS) for body in bodies]


def _run(root: Path, seconds: float) -> dict:
    env, world = _sandbox(root)
    bodies = _bodies(world, 5_000)
    figures: dict[str, object] = {
        "phase_seconds": seconds,
        "sandbox": SIM,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    figures["in_process_lookup_predict_p50_ms"] = _in_process_p50(env, bodies)
    warm_up = min(3.0, seconds)

    server = fx.server_process(env).start()
    try:
        url = f"{server.url}/v1/score"
        single = _requests(url, bodies)
        uvloop.run(closed_loop(url, single, 8, warm_up))
        for concurrency in (1, 8, 32):
            _record(
                figures,
                f"score_closed_c{concurrency}",
                closed_loop(url, single, concurrency, seconds),
            )
        _record(figures, "score_open_200rps", open_loop(url, single, 200.0, seconds))
        batch_url = f"{server.url}/v1/score/batch"
        batch = [encode_post(batch_url, {"transactions": bodies[:1_000]}, HEADERS)]
        _record(figures, "batch_closed_c2", closed_loop(batch_url, batch, 2, seconds, 1_000))
    finally:
        server.stop()

    echo_env = {**env, "FRAUDOPS_HOME": str(root / "echo")}
    echo = fx.server_process(echo_env, service="benchmarks.echo_service:Echo").start()
    try:
        url = f"{echo.url}/v1/score"
        single = _requests(url, bodies)
        uvloop.run(closed_loop(url, single, 8, warm_up))
        _record(figures, "echo_closed_c8", closed_loop(url, single, 8, seconds))
    finally:
        echo.stop()

    figures["load_average_at_end"] = os.getloadavg()
    c8 = figures["score_closed_c8"]["throughput_rps"]
    figures["c8_ratio_to_echo"] = round(
        c8 / max(figures["echo_closed_c8"]["throughput_rps"], 1e-9), 3
    )
    print(f"in-process lookup + predict p50: {figures['in_process_lookup_predict_p50_ms']} ms")
    print(f"c8 throughput / echo c8 throughput: {figures['c8_ratio_to_echo']}")
    write_figures("serving", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each phase")
    main(parser.parse_args().seconds)
