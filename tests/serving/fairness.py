"""Per-key fairness under a flood: the clients and the figures of the fairness test and benchmark.

A polite key sends at a steady rate throughout while a flooding key alternates idle and
full-speed windows of a few seconds. The flooding client runs in a process of its own (so the
two clients do not share an event loop) at a lower CPU priority: on a 2-core machine its own
CPU would otherwise be taken from the worker, which a remote client's is not. The machine is
shared and noisy, so the comparison is made robust rather than precise: each window gives a
p99 of the polite key, and the medians of the loaded and of the unloaded windows are compared,
so a burst of load from elsewhere spoils one window, not the verdict. Samples near a window's
edge are left out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tests.serving import fixtures as fx

WINDOW_S, PAIRS, EDGE_S = 2.0, 6, 0.2
# Enough samples that a window's p99 is not just its slowest answer.
POLITE_PER_S = 100
FLOOD_CONNECTIONS = 8
ANSWER_WITHIN_S = 10.0
# Transaction ids of the polite client's warm-up and of its measured run, and of the flood:
# disjoint, since the prediction log keeps one row per id (a repeated id is cheaper).
WARM_UP_IDS, POLITE_IDS, FLOOD_IDS = 0, 10**6, 10**9

# The flooding client: stdlib only, so it starts at once. Arguments: port, key, the shared
# monotonic start, window seconds, pairs, connections, first transaction id, customers,
# terminals, timestamp. Prints its answers' status counts and how often the service closed
# the connection after an answer (a 429 sent at once when the holds are full), reconnecting.
FLOOD = r"""
import asyncio, itertools, json, os, sys, time
os.nice(10)  # a remote client's CPU is not the server's: the worker comes first for the cores
port, key, start, window, pairs, conns, first, customers, terminals, when = sys.argv[1:11]
port, start, window, pairs, conns = int(port), float(start), float(window), int(pairs), int(conns)
first, customers, terminals = int(first), int(customers), int(terminals)
statuses, reconnects = {}, [0]

def request(i):
    tx = {"transaction_id": first + i, "customer_id": 1 + i % customers,
          "terminal_id": 1 + i % terminals, "amount": 12.5, "timestamp": when}
    body = json.dumps({"transaction": tx}).encode()
    head = (f"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body

async def client(until, counter):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < until:
        writer.write(request(next(counter)))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        statuses[status] = statuses.get(status, 0) + 1
        if b"connection: close" in head.lower():  # refused at once, the service closes
            writer.close()
            reconnects[0] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()

async def main():
    counter = itertools.count()
    for pair in range(pairs):
        begin, end = start + (2 * pair + 1) * window, start + (2 * pair + 2) * window
        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        await asyncio.gather(*(client(end, counter) for _ in range(conns)))
    print(json.dumps({"statuses": statuses, "reconnects": reconnects[0]}))

asyncio.run(main())
"""


@dataclass(frozen=True)
class Traffic:
    """What the clients send: customer and terminal ids cycle over 1..n, all at one time."""

    customers: int
    terminals: int
    when: str

    @classmethod
    def of(cls, world: fx.TinyWorld) -> Traffic:
        """Every entity of ``world``, on the morning after its last feature day."""
        when = world.last_as_of + dt.timedelta(hours=10, minutes=15)
        return cls(
            int(world.customer_features["customer_id"].max()),
            int(world.terminal_features["terminal_id"].max()),
            when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )


class Sample(NamedTuple):
    """One answer of the polite client."""

    sent: float
    latency: float
    status: int
    degraded: bool


def request(key: str, tx_id: int, traffic: Traffic) -> bytes:
    """A raw ``POST /v1/score`` of one transaction for ``key``."""
    tx = fx.transaction(
        tx_id, 1 + tx_id % traffic.customers, 1 + tx_id % traffic.terminals, 20.0, traffic.when
    )
    body = json.dumps({"transaction": tx}).encode()
    head = (
        "POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def polite(
    port: int, key: str, traffic: Traffic, start: float, seconds: float, first_id: int
) -> list[Sample]:
    """Steady requests (``POLITE_PER_S``) from ``start`` for ``seconds``, one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    samples, i = [], 0
    while (scheduled := start + i / POLITE_PER_S) < start + seconds:
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        sent = time.monotonic()
        writer.write(request(key, first_id + i, traffic))
        # Bounded: a service that stops answering fails the run instead of hanging it.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WITHIN_S)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), ANSWER_WITHIN_S)
        status = int(head.split(b" ", 2)[1])
        degraded = status == 200 and json.loads(body)["degraded"]
        samples.append(Sample(sent, time.monotonic() - sent, status, degraded))
        i += 1
    writer.close()
    return samples


def window_p99s(samples: list[Sample], start: float, pairs: int, loaded: bool) -> list[float]:
    """The p99 of each loaded (or unloaded) window, edges left out."""
    p99s = []
    for pair in range(pairs):
        begin = start + (2 * pair + int(loaded)) * WINDOW_S
        inside = [
            s.latency for s in samples if begin + EDGE_S <= s.sent <= begin + WINDOW_S - EDGE_S
        ]
        p99s.append(float(np.percentile(inside, 99)))
    return p99s


@dataclass
class Outcome:
    """What a run saw: the polite key's answers, the flood's status counts and reconnections."""

    samples: list[Sample]
    flooded: dict[int, int]
    reconnects: int
    start: float
    pairs: int

    def p99(self, loaded: bool) -> float:
        """Median over the loaded (or unloaded) windows of the polite key's p99, in seconds."""
        return statistics.median(window_p99s(self.samples, self.start, self.pairs, loaded))

    def flood_per_s(self) -> dict[int, float]:
        """The flood's answers per second of flooding, by status."""
        seconds = self.pairs * WINDOW_S
        return {status: n / seconds for status, n in sorted(self.flooded.items())}

    def summary(self) -> str:
        """The figures on one line."""
        loaded, unloaded = self.p99(loaded=True), self.p99(loaded=False)
        per_s = {status: round(n, 1) for status, n in self.flood_per_s().items()}
        return (
            f"polite p99 {loaded * 1e3:.1f} ms with the flood, {unloaded * 1e3:.1f} ms without "
            f"({loaded / unloaded:.2f}x); flood answers per s by status: {per_s}"
        )


def run(
    port: int, polite_key: str, flood_key: str, traffic: Traffic, pairs: int = PAIRS
) -> Outcome:
    """Warm the path, then the polite key throughout and the flood in every other window."""
    # The first requests load lazily what scoring needs.
    asyncio.run(polite(port, polite_key, traffic, time.monotonic(), 1.0, WARM_UP_IDS))
    start = time.monotonic() + 1.0
    schedule = [repr(start), str(WINDOW_S), str(pairs), str(FLOOD_CONNECTIONS), str(FLOOD_IDS)]
    entities = [str(traffic.customers), str(traffic.terminals), traffic.when]
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(port), flood_key, *schedule, *entities],
        stdout=subprocess.PIPE,
        text=True,
    )
    # This process holds every library the fixtures loaded: a full collection over them would
    # pause the polite client for tens of milliseconds, in whichever window it falls.
    gc.collect()
    gc.freeze()
    try:
        samples = asyncio.run(
            polite(port, polite_key, traffic, start, 2 * pairs * WINDOW_S, POLITE_IDS)
        )
        out, _ = flood.communicate(timeout=60 + 2 * pairs * WINDOW_S)
    finally:
        gc.unfreeze()
        flood.kill()  # a no-op once it has exited
    report = json.loads(out)
    flooded = {int(status): n for status, n in report["statuses"].items()}
    return Outcome(samples, flooded, report["reconnects"], start, pairs)
