"""Reliability of the production profile under faults, each test printing its figure.

They run on the session's stack once the loop has run through it (a champion is served):
the MLflow server stopped while the service runs, Redis stopped and restarted under load (a
private ``redis-server``: the machine's own is never stopped), and the S3 stand-in stopped in
the middle of an ingestion. The stand-in (moto) keeps its objects in memory, so it is stopped
with SIGSTOP, which freezes it with its objects (a server that no longer answers); killing it
would lose every object, a property of the stand-in and not of S3 or MinIO.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import Counter

import httpx
import pytest
from deltalake import DeltaTable

from cli.launcher import ServiceProcess
from cli.prod_demo import _transactions, next_day
from cli.stack_components import component
from fraudops.environ import exported, settings_env

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.e2e]


def _figure(name: str, values: dict) -> None:
    print(f"\nFIGURE {name}: {json.dumps(values, sort_keys=True)}")


def _headers(settings) -> dict[str, str]:
    return {"X-API-Key": settings.serving_api_keys[0]}


def _readyz(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=10).json()


def test_mlflow_down_the_service_keeps_serving_and_a_new_start_uses_the_last_good(
    stack, demo_result, tmp_path
):
    champion = demo_result["champion"]
    transactions = _transactions(stack, next_day(stack), 40)
    mlflow = component(stack, "mlflow")
    statuses: Counter[int] = Counter()
    versions: set[str] = set()
    mlflow.stop()
    fresh = None
    try:
        with httpx.Client(base_url=stack.stack_service_url, headers=_headers(stack)) as client:
            for tx in transactions[:20]:
                answer = client.post("/v1/score", json={"transaction": tx}, timeout=30)
                statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    versions.add(answer.json()["model_version"])
        started = time.perf_counter()
        # MLflow's client retries a refused connection 7 times with exponential backoff
        # (minutes) before the service gives up on the registry: one retry, as an operator
        # who wants a fast fallback sets it.
        fast_fallback = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
        env = {**settings_env(stack), **fast_fallback}
        fresh = ServiceProcess(env, tmp_path / "fresh-service.log")
        fresh.start(timeout=420)
        start_s = time.perf_counter() - started
        body = _readyz(fresh.url)
        answer = httpx.post(
            f"{fresh.url}/v1/score",
            json={"transaction": transactions[-1]},
            headers=_headers(stack),
            timeout=30,
        )
    finally:
        if fresh is not None:
            fresh.stop()
        mlflow.start()
    _figure(
        "mlflow_down",
        {
            "running_service_answers": dict(statuses),
            "new_start_s": round(start_s, 1),
            "new_start_source": (body.get("fallback") or {}).get("source"),
        },
    )
    assert statuses == Counter({200: 20})
    assert versions == {champion}
    assert body["ready"] is True
    assert body["serving"]["champion"]["version"] == champion
    assert body["fallback"]["source"] == "last_good"
    assert answer.status_code == 200 and answer.json()["model_version"] == champion


def test_redis_stopped_and_restarted_under_load(stack, demo_result, private_redis, tmp_path):
    from features.store import apply_definitions, open_store
    from features.store.materialize import materialize_pending

    settings = stack.model_copy(
        update={
            "redis_url": private_redis.url,
            "feast_project": stack.feast_project + "_r",
            # The fault is Redis's: the per-key rate limit must not answer the 8 clients' load
            # (they send faster than one key's default share on a quiet machine).
            "serving_rate_limit_per_s": 1e9,
            "serving_rate_limit_burst": 10**9,
        }
    )
    # Feast's offline reads take the object store's options from the AWS_* variables, which
    # the stack's processes have and this one has not.
    with exported(settings_env(settings)):
        store = open_store(settings)
        apply_definitions(store, settings)
        materialize_pending(store, settings)
    transactions = _transactions(stack, next_day(stack), 200)
    service = ServiceProcess(settings_env(settings), tmp_path / "redis-fault-service.log")
    service.start(timeout=420)
    answers: list[tuple[float, int, bool | None]] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        with httpx.Client(base_url=service.url, headers=_headers(stack), timeout=30) as client:
            i = offset
            while not stop.is_set():
                tx = transactions[i % len(transactions)]
                i += 7
                try:
                    answer = client.post("/v1/score", json={"transaction": tx})
                except httpx.HTTPError:
                    answers.append((time.monotonic(), 0, None))
                    continue
                degraded = answer.json().get("degraded") if answer.status_code == 200 else None
                answers.append((time.monotonic(), answer.status_code, degraded))

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    pids = None
    try:
        assert _readyz(service.url)["ready"] is True
        pids = service.process.pid
        for thread in threads:
            thread.start()
        time.sleep(3)
        private_redis.stop()
        down_at = time.monotonic()
        time.sleep(5)
        private_redis.start()
        up_at = time.monotonic()
        recovered_at = None
        deadline = up_at + 90
        while time.monotonic() < deadline and recovered_at is None:
            time.sleep(0.5)
            recent = [a for a in answers if a[0] > up_at]
            healthy = [a for a in recent if a[1] == 200 and a[2] is False]
            if len(healthy) >= 20:
                recovered_at = healthy[0][0]
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=60)
        service_alive = service.process is not None and service.process.poll() is None
        service.stop()
    statuses = Counter(a[1] for a in answers)
    outage = [a for a in answers if down_at <= a[0] < up_at]
    _figure(
        "redis_restart",
        {
            "requests": len(answers),
            "statuses": dict(statuses),
            "degraded_during_outage": sum(bool(a[2]) for a in outage),
            "answers_during_outage": len(outage),
            "recovery_s_after_restart": (
                round(recovered_at - up_at, 1) if recovered_at is not None else None
            ),
            "workers": settings.serving_workers,
        },
    )
    assert service_alive and pids is not None
    assert set(statuses) == {200}, statuses
    assert outage and any(a[2] for a in outage)
    assert recovered_at is not None


def test_s3_stopped_during_an_ingestion(stack, demo_result):
    from lakehouse.ingestion import Lakehouse, ingest_feed

    # Short client timeouts, so that a store that stopped answering fails the call in seconds.
    options = {**stack.storage_options, "timeout": "3s", "max_retries": "1", "retry_timeout": "5s"}
    settings = stack.model_copy(update={"storage_options": options})
    lakehouse = Lakehouse(settings)
    uri = lakehouse.raw_uri("transactions")
    before = DeltaTable(uri, storage_options=options)
    version, rows = before.version(), before.to_pyarrow_table(columns=["transaction_id"]).num_rows
    days = [stack.sim_end_date - dt.timedelta(days=n) for n in range(3)]
    s3 = component(stack, "s3")
    paused = threading.Event()

    def pause_after_validation(message: str) -> None:
        if "validated" in message and not paused.is_set():
            s3.pause()
            paused.set()

    started = time.perf_counter()
    try:
        with pytest.raises(OSError) as failure:
            ingest_feed(
                lakehouse, "transactions", days, progress=pause_after_validation, force=True
            )
        failed_after_s = time.perf_counter() - started
    finally:
        if paused.is_set():
            s3.resume()
    assert paused.is_set()
    message = str(failure.value)
    assert settings.storage_options["AWS_ENDPOINT_URL"] in message
    after = DeltaTable(uri, storage_options=options)
    assert after.version() == version
    assert after.to_pyarrow_table(columns=["transaction_id"]).num_rows == rows
    started = time.perf_counter()
    report = ingest_feed(lakehouse, "transactions", days, force=True)
    rerun_s = time.perf_counter() - started
    final = DeltaTable(uri, storage_options=options)
    _figure(
        "s3_stopped_during_ingestion",
        {
            "failed_after_s": round(failed_after_s, 1),
            "error": message.splitlines()[0][:120],
            "version_before": version,
            "version_after_failure": after.version(),
            "version_after_rerun": final.version(),
            "rerun_s": round(rerun_s, 1),
        },
    )
    assert final.version() > version
    assert final.to_pyarrow_table(columns=["transaction_id"]).num_rows == rows
    assert sorted(report.days) == sorted(days)
