"""A lean HTTP/1.1 load generator on asyncio: keep-alive connections and pre-encoded requests.

A general-purpose client (httpx) spends about a millisecond of CPU per request; on a 2-core
machine that shares its cores with the server, the client then caps the measured throughput
(and fixed-rate schedules fall behind). This one sends prepared bytes and parses only the
status line and the body length, the way wrk-style tools do, so the figures are the server's.
Closed loop: N connections each waiting for its answer. Open loop: requests sent on a fixed
schedule, latency counted from the scheduled send time so queueing is not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


class ProtocolError(RuntimeError):
    """The server's answer was not a well-formed HTTP/1.1 response."""


def encode_post(url: str, body: object, headers: dict[str, str]) -> bytes:
    """One complete HTTP/1.1 POST request with a JSON body, as bytes."""
    parts = urlsplit(url)
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"bad status line {status_line!r}") from exc
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status


class Connection:
    """One keep-alive connection that sends prepared requests one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, raw: bytes) -> int:
        """Send ``raw`` and wait for the answer; its status (0 when the connection failed)."""
        try:
            if self._streams is not None and self._streams[0].at_eof():
                # The server closed the idle connection (keep-alive timeout): reconnect, as
                # any pooling client does, instead of counting its own stale socket as an error.
                self.close()
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(raw)
            return await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError):
            self.close()
            return 0

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


@dataclass
class Tally:
    """Latencies of the successful requests and the count of failed ones."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_statuses: Counter[int] = field(default_factory=Counter)

    def add(self, status: int, seconds: float) -> None:
        """Record one answer: 200 counts as success, anything else (0: no answer) as error."""
        if status == 200:
            self.latencies.append(seconds)
        else:
            self.errors += 1
            self.error_statuses[status] += 1

    def summary(self, elapsed: float, items_per_request: int = 1) -> dict:
        """Throughput and latency percentiles of the phase."""
        ms = np.array(self.latencies) * 1000.0 if self.latencies else np.array([np.nan])
        return {
            "requests": len(self.latencies),
            "errors": self.errors,
            "error_statuses": {str(k): v for k, v in sorted(self.error_statuses.items())},
            "throughput_rps": round(len(self.latencies) / elapsed, 1),
            "items_per_s": round(len(self.latencies) * items_per_request / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
        }


@contextlib.contextmanager
def _quiet_collector() -> Iterator[None]:
    """Keep the caller's heap out of full garbage collections while a phase runs.

    The benchmark process holds every library the sandbox needed; a full collection over
    them pauses this process for a few hundred milliseconds, which would show up as latency
    of the server under test.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def closed_loop(
    url: str, requests: Sequence[bytes], concurrency: int, seconds: float, items: int = 1
) -> dict:
    """``concurrency`` connections, each sending the next request as soon as it has an answer."""
    host, port = _address(url)
    tally = Tally()
    stop = time.perf_counter() + seconds
    rotation: Iterator[bytes] = itertools.cycle(requests)

    async def client() -> None:
        connection = Connection(host, port)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status = await connection.request(next(rotation))
            tally.add(status, time.perf_counter() - started)
        connection.close()

    with _quiet_collector():
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return tally.summary(time.perf_counter() - started, items)


async def open_loop(url: str, requests: Sequence[bytes], rate: float, seconds: float) -> dict:
    """Requests at ``rate`` per second on a fixed schedule, each on a free connection.

    Bounded in time: what the server has not answered 10 s after the last scheduled send counts
    as an error.
    """
    host, port = _address(url)
    tally = Tally()
    idle: list[Connection] = []
    n = int(rate * seconds)
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        connection = idle.pop() if idle else Connection(host, port)
        status = await connection.request(requests[i % len(requests)])
        tally.add(status, time.perf_counter() - scheduled)
        idle.append(connection)

    with _quiet_collector():
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, unfinished = await asyncio.wait(tasks, timeout=seconds + 10.2)
    for task in unfinished:
        task.cancel()
    if unfinished:
        tally.errors += len(unfinished)
        tally.error_statuses[-1] += len(unfinished)  # -1: not answered in time
    for connection in idle:
        connection.close()
    return {**tally.summary(time.perf_counter() - start), "offered_rps": rate}
