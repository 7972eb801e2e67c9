"""Live traffic for the demo: the day after the last ingested one, scored by the real service.

The simulator produces the transactions of that day (not ingested: they are "arriving now"),
the service runs as ``bentoml serve`` on loopback, a few transactions go one by one to
``/v1/score`` and the rest in batches to ``/v1/score/batch``; the summary compares decisions
with the simulator's ground truth and counts the prediction-log rows written.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pyarrow.compute as pc

from cli.launcher import ServiceProcess
from fraudops.catalog import RAW_TRANSACTIONS
from fraudops.environ import settings_env
from fraudops.settings import Settings
from lakehouse.delta import read_table, table_exists
from lakehouse.simulator import Simulator, SimulatorConfig

Say = Callable[[str], None]


def next_day(settings: Settings) -> dt.date:
    """The day after the last ingested transaction day."""
    days = read_table(
        RAW_TRANSACTIONS.uri(settings), ["tx_date"], storage_options=settings.storage_options
    )
    return pc.max(days.column("tx_date")).as_py() + dt.timedelta(days=1)


def scoring_requests(table) -> list[dict]:
    """The simulator's transactions (an Arrow table) as the service's scoring requests."""
    return [
        {
            "transaction_id": int(row["transaction_id"]),
            "customer_id": int(row["customer_id"]),
            "terminal_id": int(row["terminal_id"]),
            "amount": float(row["tx_amount"]),
            "timestamp": row["tx_datetime"].isoformat(),
        }
        for row in table.to_pylist()
        if row["tx_amount"] is not None
    ]


# A 429 names how long to wait (Retry-After); a polite client waits that long, this often.
RATE_LIMITED_ATTEMPTS = 30


def score_batch(client: httpx.Client, chunk: list[dict]) -> list[dict]:
    """One batch's answers, waiting out the service's per-key rate limit when it answers 429."""
    for _ in range(RATE_LIMITED_ATTEMPTS):
        response = client.post("/v1/score/batch", json={"transactions": chunk})
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()
    return response.json()["results"]


def score_live_day(
    settings: Settings,
    say: Say = print,
    limit: int = 5_000,
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    """Start the service, score up to ``limit`` transactions of the next day, stop it.

    The service gets ``settings`` through its environment, plus the variables of ``env``.
    """
    day = next_day(settings)
    simulated = Simulator(SimulatorConfig.from_settings(settings)).simulate_day(day)
    transactions = scoring_requests(simulated.transactions.slice(0, limit))
    sent = {tx["transaction_id"] for tx in transactions}
    frauds = set(simulated.frauds.column("transaction_id").to_pylist()) & sent
    log_uri = settings.prediction_log_uri
    before = read_table(log_uri).num_rows if table_exists(log_uri) else 0
    headers = {"X-API-Key": settings.serving_api_keys[0]}
    service_env = {**settings_env(settings), **(env or {})}
    server = ServiceProcess(service_env, settings.home / "serving" / "service.log").start()
    say(f"scoring service up at {server.url} (log {server.log_path})")
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            ready = client.get("/readyz").status_code == 200
            results = []
            for tx in transactions[:5]:
                answer = client.post("/v1/score", json={"transaction": tx})
                answer.raise_for_status()
                results.append(answer.json())
            say(f"  POST /v1/score {transactions[0]} ->\n  {results[0]}")
            for start in range(5, len(transactions), settings.serving_max_batch):
                chunk = transactions[start : start + settings.serving_max_batch]
                results.extend(score_batch(client, chunk))
    finally:
        server.stop()
    decisions = Counter(r["decision"] for r in results)
    flagged = {r["transaction_id"] for r in results if r["decision"] != "approve"}
    caught = len(flagged & frauds)
    logged = read_table(log_uri).num_rows - before
    summary = {
        "day": day.isoformat(),
        "scored": len(results),
        "ready": ready,
        "degraded": sum(r["degraded"] for r in results),
        "decisions": dict(decisions),
        "frauds": len(frauds),
        "frauds_flagged": caught,
        "prediction_log_rows": logged,
        "model_versions": sorted({r["model_version"] for r in results}),
    }
    say(
        f"live day {day}: {len(results):,} transactions scored by model "
        f"{', '.join(summary['model_versions'])} ({dict(decisions)}), "
        f"{caught}/{len(frauds)} frauds flagged, {summary['degraded']} degraded, "
        f"{logged:,} rows appended to the prediction log"
    )
    return summary
