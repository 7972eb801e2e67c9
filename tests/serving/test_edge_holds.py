"""Held rate-limit refusals on the real service: a 429 sent after the hold, the caps on holds,
and what a held refusal does not take from other keys.

The service has a rate limit that never refills within the test (a burst of 1), so a key's
second request is rate-limited; one hold per key and two in all; a whole-service in-flight cap
of 1, which a held refusal must not take; a body deadline shorter than the shortest hold.
No timing is asserted: which answer is held shows in the headers (a held 429 keeps its
connection, one sent at once closes it) and in the order of the answers.
"""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from tests.serving import fixtures as fx

KEYS = [f"hold-key-{i}" for i in range(8)]
HOLD_S, BODY_TIMEOUT = 2.0, 0.5
PATIENCE = 30.0
TX = fx.transaction(1, 3, 5, 20.0, "2018-05-16T10:15:00Z")


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry, feast_repo):
    """A service whose keys are rate-limited from their second request on."""
    env = fx.service_env(
        tmp_path_factory.mktemp("holds"),
        registry,
        feast_repo,
        serving_api_keys=KEYS,
        serving_feature_timeout_ms=2_000,
        serving_rate_limit_per_s=0.001,
        serving_rate_limit_burst=1,
        serving_rate_limit_hold_s=HOLD_S,
        serving_rate_limit_max_held_per_key=1,
        serving_rate_limit_max_held=2,
        serving_max_concurrency=1,
        serving_max_in_flight_per_key=1,
        serving_body_timeout_s=BODY_TIMEOUT,
    )
    server = fx.server_process(env).start()
    yield server
    server.stop()


def _request(key: str) -> bytes:
    body = json.dumps({"transaction": TX}).encode()
    head = (
        "POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One answer: status, headers (lower-case names), JSON body."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of an answer"
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def _closed(sock: socket.socket) -> bool:
    """Whether the service closes the connection (within the patience)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            break
    return False


def _held(sock: socket.socket, key: str) -> None:
    """Send a rate-limited request of ``key`` and check that its answer is held."""
    sock.sendall(_request(key))
    answered, _, _ = select.select([sock], [], [], 0.2)
    assert not answered, f"the 429 was not held: {sock.recv(65536)!r}"


def _spend_burst(server, sock: socket.socket, key: str) -> None:
    """One admitted request of ``key``, its slot released again."""
    sock.sendall(_request(key))
    assert _answer(sock)[0] == 200
    # The answer can arrive before its app has ended and released its in-flight slot (caps of
    # 1 here): a probe answered after it means the slot is free again.
    assert httpx.get(f"{server.url}/healthz", timeout=PATIENCE).status_code == 200


def _assert_429(status: int, headers: dict[str, str], body: dict) -> None:
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error"} and "rate limit" in body["error"]


def test_a_rate_limited_request_gets_its_429_after_the_hold_and_keeps_its_connection(server):
    sock = _connect(server)
    with sock:
        _spend_burst(server, sock, KEYS[0])
        _held(sock, KEYS[0])
        status, headers, body = _answer(sock)
        _assert_429(status, headers, body)
        assert "connection" not in headers
        # The same connection goes on: the next request is rate-limited, and held, again.
        _held(sock, KEYS[0])
        assert _answer(sock)[0] == 429


def test_beyond_a_keys_holds_the_429_is_sent_at_once_and_closes_its_connection(server):
    held, extra, other = _connect(server), _connect(server), _connect(server)
    with held, extra, other:
        _spend_burst(server, held, KEYS[1])
        _held(held, KEYS[1])
        extra.sendall(_request(KEYS[1]))
        status, headers, body = _answer(extra)
        _assert_429(status, headers, body)
        assert headers["connection"] == "close" and _closed(extra)
        # Another key is answered meanwhile: the held refusal is not in flight (the whole
        # service may have one request in flight) and holds none of the other key's slots.
        _spend_burst(server, other, KEYS[2])
        status, headers, body = _answer(held)
        _assert_429(status, headers, body)
        assert "connection" not in headers


def test_beyond_the_workers_holds_the_429_is_sent_at_once_for_any_key(server):
    socks = [_connect(server) for _ in range(3)]
    keys = KEYS[3:6]
    try:
        for sock, key in zip(socks, keys, strict=True):
            _spend_burst(server, sock, key)
        _held(socks[0], keys[0])
        _held(socks[1], keys[1])
        socks[2].sendall(_request(keys[2]))
        status, headers, body = _answer(socks[2])  # two held in all: this one at once
        _assert_429(status, headers, body)
        assert headers["connection"] == "close" and _closed(socks[2])
        for sock in socks[:2]:
            status, headers, body = _answer(sock)
            _assert_429(status, headers, body)
            assert "connection" not in headers
    finally:
        for sock in socks:
            sock.close()


def test_a_held_refusal_whose_body_stalls_still_gets_its_408(server):
    sock = _connect(server)
    with sock:
        _spend_burst(server, sock, KEYS[6])
        request = _request(KEYS[6])
        sock.sendall(request[:-10])  # the headers and all but 10 bytes of the body
        status, headers, body = _answer(sock)
        assert status == 408 and "body" in body["error"]
        assert headers["connection"] == "close" and _closed(sock)
