"""Per-key fairness with the default limits: one key sending at full speed leaves another key's
p99 within twice its unloaded value.

The flooding client runs in a process of its own at a lower CPU priority: on a 2-core test
machine its own CPU would otherwise be taken from the worker, which a remote client's is not.
The machine is shared and noisy, so the comparison is made robust rather than precise: a polite
client sends at a steady rate throughout, while a flooding client (its own process, so the two
do not share an event loop) alternates idle and full-speed windows of a few seconds. Each
window gives a p99; the medians of the loaded and of the unloaded windows are compared, so a
burst of load from elsewhere spoils one window, not the verdict. Samples near a window's edge
are left out.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.serving import fixtures as fx

FLOOD_KEY, POLITE_KEY = "fair-flood", "fair-polite"
WINDOW_S, PAIRS, EDGE_S = 2.0, 6, 0.2
# Enough samples that a window's p99 is not just its slowest answer.
POLITE_PER_S = 100
FLOOD_CONNECTIONS = 8
ANSWER_WITHIN_S = 10.0
WHEN = "2018-05-16T10:15:00Z"

# The flooding client: stdlib only, so it starts at once. Arguments: port, key, the shared
# monotonic start, window seconds, pairs, connections. Prints its answers' status counts.
FLOOD = r"""
import asyncio, json, os, sys, time
os.nice(10)  # a remote client's CPU is not the server's: the worker comes first for the cores
port, key, start, window, pairs, conns = sys.argv[1:7]
port, start, window, pairs, conns = int(port), float(start), float(window), int(pairs), int(conns)
statuses = {}

def request(i):
    tx = {"transaction_id": 10**9 + i, "customer_id": 1 + i % 60, "terminal_id": 1 + i % 120,
          "amount": 12.5, "timestamp": "2018-05-16T10:15:00Z"}
    body = json.dumps({"transaction": tx}).encode()
    head = (f"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body

async def client(k, until, counter):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < until:
        i = next(counter)
        writer.write(request(k * 10**7 + i))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        statuses[status] = statuses.get(status, 0) + 1
    writer.close()

async def main():
    import itertools
    counter = itertools.count()
    for pair in range(pairs):
        begin, end = start + (2 * pair + 1) * window, start + (2 * pair + 2) * window
        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        await asyncio.gather(*(client(k, end, counter) for k in range(conns)))
    print(json.dumps(statuses))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry, feast_repo):
    """A service with the default limits and two keys."""
    env = fx.service_env(
        tmp_path_factory.mktemp("fairness"),
        registry,
        feast_repo,
        serving_api_keys=[FLOOD_KEY, POLITE_KEY],
        serving_feature_timeout_ms=2_000,
    )
    server = fx.server_process(env).start()
    yield server
    server.stop()


def _request(tx_id: int) -> bytes:
    tx = fx.transaction(tx_id, 1 + tx_id % 60, 1 + tx_id % 120, 20.0, WHEN)
    body = json.dumps({"transaction": tx}).encode()
    head = (
        "POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {POLITE_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _polite(port: int, start: float, seconds: float) -> list[tuple[float, float, int]]:
    """(sent at, seconds to answer, status) of steady requests from ``start`` for ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    samples, i = [], 0
    while (scheduled := start + i / POLITE_PER_S) < start + seconds:
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        sent = time.monotonic()
        writer.write(_request(i))
        # Bounded: a service that stops answering fails the test instead of hanging it.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WITHIN_S)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), ANSWER_WITHIN_S)
        samples.append((sent, time.monotonic() - sent, int(head.split(b" ", 2)[1])))
        i += 1
    writer.close()
    return samples


def _window_p99s(samples, start: float, loaded: bool) -> list[float]:
    """The p99 of each loaded (or unloaded) window, edges left out."""
    p99s = []
    for pair in range(PAIRS):
        begin = start + (2 * pair + int(loaded)) * WINDOW_S
        inside = [
            latency
            for sent, latency, _ in samples
            if begin + EDGE_S <= sent <= begin + WINDOW_S - EDGE_S
        ]
        p99s.append(float(np.percentile(inside, 99)))
    return p99s


def test_one_key_at_full_speed_leaves_another_keys_p99_within_twice_unloaded(server):
    # Warm the path (first requests load lazily what scoring needs).
    asyncio.run(_polite(server.port, time.monotonic(), 1.0))
    start = time.monotonic() + 1.0
    schedule = [repr(start), str(WINDOW_S), str(PAIRS), str(FLOOD_CONNECTIONS)]
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(server.port), FLOOD_KEY, *schedule],
        stdout=subprocess.PIPE,
        text=True,
    )
    # This process holds every library the fixtures loaded: a full collection over them would
    # pause the polite client for tens of milliseconds, in whichever window it falls.
    gc.collect()
    gc.freeze()
    try:
        samples = asyncio.run(_polite(server.port, start, 2 * PAIRS * WINDOW_S))
        out, _ = flood.communicate(timeout=60)
    finally:
        gc.unfreeze()
        flood.kill()  # a no-op once it has exited
    flooded = {int(k): v for k, v in json.loads(out).items()}

    assert {status for _, _, status in samples} == {200}
    # The flood ran at full speed: answered up to its key's rate, refused beyond it.
    assert flooded.get(200, 0) > 0 and flooded.get(429, 0) > 0
    per_s = {status: n / (PAIRS * WINDOW_S) for status, n in sorted(flooded.items())}
    unloaded = statistics.median(_window_p99s(samples, start, loaded=False))
    loaded = statistics.median(_window_p99s(samples, start, loaded=True))
    figures = (
        f"p99 {loaded * 1e3:.1f} ms with the flood, {unloaded * 1e3:.1f} ms without; "
        f"flood answers per s by status: {per_s}"
    )
    print(figures)  # shown with -rP: the figures docs/serving.md quotes
    assert loaded <= 2 * unloaded, figures
