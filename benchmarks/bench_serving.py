"""Online scoring on loopback: latency and throughput of the real service, and baselines.

Phases (closed loop = N clients each waiting for its answer; open loop = requests sent on a
fixed schedule, latency counted from the scheduled send time so queueing is not hidden):
``/v1/score`` closed loop at concurrency 1, 8 and 32; open loop at 200 requests/s;
``/v1/score/batch`` (1,000 transactions per request) closed loop at concurrency 2.
Baselines in the same run: in-process feature lookup + predict (no HTTP), a trivial BentoML
echo service with the same schema, and concurrency 8 again on a second service whose
prediction-log journal is off (``FRAUDOPS_SERVING_JOURNAL=false``): the cost of making every
answer durable before it goes out. Every request carries a transaction id of its own, as live
traffic does (the prediction log keeps one row per id, so repeated ids would be cheaper).
Targets (2 cores): >= 300 requests/s at concurrency 8 and at least half the echo
service's; p99 <= 50 ms at 200 requests/s; zero errors; >= 20,000 transactions/s in batches.

The sandbox is built like the serving tests': the tiny simulated lakehouse, reference
features from features/definitions.py in a SQLite Feast online store, and as champion in a
SQLite MLflow registry the production model type (an XGBoost ScoringModel pyfunc, trained on
the tiny data). ``--seconds`` shortens every phase; ``--phases`` runs some of them (e.g.
``c8,echo``).

The benchmark measures capacity, so its one key is not held back by the per-key limits of the
HTTP edge (``CAPACITY_LIMITS``: a rate limit no phase reaches and a per-key in-flight cap equal
to the whole worker's); the shipped defaults are sized from these figures (docs/serving.md,
"Sizing the rate limit"). Any answer other than 200 is an error of the phase, 429s included.
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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import uvloop

from benchmarks.common import write_figures
from benchmarks.loadgen import closed_loop, encode_post, open_loop
from fraudops.settings import get_settings
from lakehouse.ingestion import ingest_simulation
from tests.serving import fixtures as fx

KEY = "bench-key"
ECHO_SERVICE = "benchmarks.echo_service:Echo"
HEADERS = {"X-API-Key": KEY}
SIM = {"sim_customers": 500, "sim_terminals": 1_000, "sim_days": 40}
# One key carries every phase's load: with the default per-key limits (sized to leave room for
# other keys) it would measure the limits, not the worker.
CAPACITY_LIMITS = {
    "serving_rate_limit_per_s": 1e9,
    "serving_rate_limit_burst": 10**9,
    "serving_max_concurrency": 512,
    "serving_max_in_flight_per_key": 512,
}
PHASES = ("in_process", "c1", "c8", "c32", "open", "batch", "echo", "c8_journal_off")
# Requests prepared per second of a phase: more than any phase answers, so no id repeats.
SINGLE_PER_S = 3_000
BATCH_PER_S = 50


def champion_world(root: Path) -> tuple[str, fx.TinyWorld]:
    """The sandbox world under ``root`` and its tracking URI, an XGBoost champion registered."""
    settings = get_settings(home=root / "lake", **SIM)
    ingest_simulation(settings)
    world = fx.build_world(settings)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fx.register_scoring_model(uri, root, world)
    fx.set_alias(uri, "champion", 1)
    return uri, world


def _sandbox(root: Path) -> tuple[dict[str, str], fx.TinyWorld]:
    uri, world = champion_world(root)
    repo = fx.build_feast_repo(root / "feast", world)
    env = fx.service_env(
        root / "service",
        uri,
        repo,
        serving_api_keys=[KEY],
        **CAPACITY_LIMITS,
    )
    return env, world


def _bodies(world: fx.TinyWorld, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    customers = world.customer_features["customer_id"].unique()
    terminals = world.terminal_features["terminal_id"].unique()
    when = (world.last_as_of + dt.timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        fx.transaction(
            i,
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
        # Lookup and predict only: the journal's cost is the HTTP phases' (c8 against the
        # journal-off service).
        serving_journal=False,
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


def main(seconds: float = 20.0, phases: Sequence[str] = PHASES) -> dict:
    """Build the sandbox, run the phases (default: all), print and write the figures."""
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-serving-"))
    try:
        return _run(root, seconds, set(phases))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _requests(url: str, bodies: list[dict], first_id: int, n: int) -> list[bytes]:
    """``n`` single-transaction requests with ids ``first_id``, ``first_id + 1``, ..."""
    return [
        encode_post(
            url,
            {"transaction": {**bodies[i % len(bodies)], "transaction_id": first_id + i}},
            HEADERS,
        )
        for i in range(n)
    ]


def _batches(url: str, bodies: list[dict], first_id: int, n: int) -> list[bytes]:
    """``n`` requests of 1,000 transactions each, every transaction id distinct."""
    return [
        encode_post(
            url,
            {
                "transactions": [
                    {**bodies[j % len(bodies)], "transaction_id": first_id + 1_000 * i + j}
                    for j in range(1_000)
                ]
            },
            HEADERS,
        )
        for i in range(n)
    ]


class _Ids:
    """Hands out disjoint blocks of transaction ids, one per phase."""

    def __init__(self) -> None:
        self.next = 0

    def block(self, n: int) -> int:
        first, self.next = self.next, self.next + n
        return first


def _score_phases(
    figures: dict, env: dict[str, str], bodies: list[dict], seconds: float, phases: set[str]
) -> None:
    warm_up = min(3.0, seconds)
    n = int(SINGLE_PER_S * seconds)
    ids = _Ids()
    server = fx.server_process(env).start()
    try:
        url = f"{server.url}/v1/score"
        uvloop.run(closed_loop(url, _requests(url, bodies, ids.block(n), n), 8, warm_up))
        for concurrency in (1, 8, 32):
            if f"c{concurrency}" in phases:
                single = _requests(url, bodies, ids.block(n), n)
                _record(
                    figures,
                    f"score_closed_c{concurrency}",
                    closed_loop(url, single, concurrency, seconds),
                )
        if "open" in phases:
            single = _requests(url, bodies, ids.block(n), n)
            _record(figures, "score_open_200rps", open_loop(url, single, 200.0, seconds))
        if "batch" in phases:
            batch_url = f"{server.url}/v1/score/batch"
            count = int(BATCH_PER_S * seconds)
            batch = _batches(batch_url, bodies, ids.block(1_000 * count), count)
            _record(figures, "batch_closed_c2", closed_loop(batch_url, batch, 2, seconds, 1_000))
    finally:
        server.stop()


def _c8_phase(figures: dict, name: str, env: dict[str, str], bodies, seconds, **kw) -> None:
    """Concurrency 8 on a service of its own (the echo baseline, the journal turned off)."""
    warm_up = min(3.0, seconds)
    n = int(SINGLE_PER_S * seconds)
    server = fx.server_process(env, **kw).start()
    try:
        url = f"{server.url}/v1/score"
        uvloop.run(closed_loop(url, _requests(url, bodies, 10**12, n), 8, warm_up))
        single = _requests(url, bodies, 2 * 10**12, n)
        _record(figures, name, closed_loop(url, single, 8, seconds))
    finally:
        server.stop()


def _run(root: Path, seconds: float, phases: set[str]) -> dict:
    env, world = _sandbox(root)
    bodies = _bodies(world, 5_000)
    figures: dict[str, object] = {
        "phase_seconds": seconds,
        "phases": sorted(phases),
        "sandbox": SIM,
        "edge_limits": {k: float(v) for k, v in CAPACITY_LIMITS.items()},
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    if "in_process" in phases:
        figures["in_process_lookup_predict_p50_ms"] = _in_process_p50(env, bodies)
        print(f"in-process lookup + predict p50: {figures['in_process_lookup_predict_p50_ms']} ms")
    if phases & {"c1", "c8", "c32", "open", "batch"}:
        _score_phases(figures, env, bodies, seconds, phases)
    if "c8_journal_off" in phases:
        off = {
            **env,
            "FRAUDOPS_HOME": str(root / "no_journal"),
            "FRAUDOPS_SERVING_JOURNAL": "false",
        }
        _c8_phase(figures, "score_closed_c8_journal_off", off, bodies, seconds)
    if "echo" in phases:
        echo_env = {**env, "FRAUDOPS_HOME": str(root / "echo")}
        _c8_phase(figures, "echo_closed_c8", echo_env, bodies, seconds, service=ECHO_SERVICE)

    figures["load_average_at_end"] = os.getloadavg()
    c8 = figures.get("score_closed_c8", {}).get("throughput_rps")
    for baseline, key in (
        ("echo_closed_c8", "c8_ratio_to_echo"),
        ("score_closed_c8_journal_off", "c8_ratio_to_journal_off"),
    ):
        if c8 is not None and baseline in figures:
            figures[key] = round(c8 / max(figures[baseline]["throughput_rps"], 1e-9), 3)
            print(f"c8 throughput / {baseline} throughput: {figures[key]}")
    write_figures("serving", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each phase")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {', '.join(PHASES)}"
    )
    args = parser.parse_args()
    main(args.seconds, args.phases.split(","))
