"""Two scoring replicas on the Redis online store, appending to one Delta prediction log at once.

The stack's service and a second replica with the same settings (same registry, online store
and prediction log on the object store) take concurrent load; every answer acknowledged with
200 must be in the log exactly once, and the log must stay readable.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import httpx
import pyarrow.compute as pc
import pytest

from cli.launcher import ServiceProcess
from cli.prod_demo import _transactions, next_day
from fraudops.environ import settings_env

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.e2e]

# Transaction ids of this test only: far above the simulator's, so no earlier row counts.
BASE_ID = 10**15
LOAD_S = 8.0
CLIENTS_PER_REPLICA = 4


def test_two_replicas_share_the_prediction_log(stack, demo_result, tmp_path):
    from deltalake import DeltaTable

    template = _transactions(stack, next_day(stack), 200)
    second = ServiceProcess(settings_env(stack), tmp_path / "replica-2.log")
    second.start(timeout=420)
    acknowledged: list[int] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(BASE_ID, BASE_ID + 10**9))

    def load(url: str) -> None:
        headers = {"X-API-Key": stack.serving_api_keys[0]}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    tid = next(counter)
                tx = {**template[tid % len(template)], "transaction_id": tid}
                try:
                    status = client.post("/v1/score", json={"transaction": tx}).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        acknowledged.append(tid)

    urls = [stack.stack_service_url, second.url]
    threads = [threading.Thread(target=load, args=(u,)) for u in urls * CLIENTS_PER_REPLICA]
    try:
        for thread in threads:
            thread.start()
        time.sleep(LOAD_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        # A graceful stop commits the replica's queued rows.
        second.stop()
    uri, options = stack.prediction_log_uri, stack.storage_options
    # The stack's service commits every serving_log_flush_s: wait until its rows landed.
    deadline = time.monotonic() + 60
    while True:
        table = DeltaTable(uri, storage_options=options)
        ids = table.to_pyarrow_table(columns=["transaction_id"]).column("transaction_id")
        ours = ids.filter(pc.greater_equal(ids, BASE_ID)).to_pylist()
        if len(ours) >= len(acknowledged) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    logged = Counter(ours)
    lost = set(acknowledged) - set(logged)
    duplicates = sum(n - 1 for n in logged.values() if n > 1)
    print(
        "\nFIGURE two_replicas_one_log: "
        + json.dumps(
            {
                "replicas": 2,
                "workers_per_replica": stack.serving_workers,
                "clients": len(threads),
                "load_s": LOAD_S,
                "acknowledged": len(acknowledged),
                "statuses": dict(statuses),
                "logged": len(ours),
                "lost": len(lost),
                "duplicates": duplicates,
                "log_version": table.version(),
            }
        )
    )
    assert set(statuses) == {200}, statuses
    assert acknowledged
    assert not lost
    assert duplicates == 0
    assert len(ours) == len(acknowledged)
