"""The HTTP edge of the real service on loopback: deadlines, header limits, in-flight caps,
media types, strict timestamps, log hygiene and a private Prometheus folder per instance."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import httpx
import pytest

from cli.launcher import ServiceProcess, free_port
from tests.serving import fixtures as fx

KEY, OTHER = "edge-key-a", "edge-key-b"
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 1.0, 3.0, 1.0
PER_KEY, IN_ALL = 3, 5
# Waits are bounded: a connection the service should have cut fails the test after this long.
PATIENCE = 8.0
TX = fx.transaction(1, 3, 5, 20.0, "2018-05-16T10:15:00Z")


def edge_env(home: Path, registry: str, feast_repo: Path, **overrides: object) -> dict[str, str]:
    """A service environment with no BENTOML_HOME: the launcher picks the instance's own."""
    env = fx.service_env(
        home,
        registry,
        feast_repo,
        serving_api_keys=[KEY, OTHER],
        serving_feature_timeout_ms=2_000,
        **overrides,
    )
    env.pop("BENTOML_HOME")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry, feast_repo):
    """One service with short deadlines and small in-flight caps."""
    home = tmp_path_factory.mktemp("edge")
    env = edge_env(
        home,
        registry,
        feast_repo,
        serving_header_timeout_s=HEADER_TIMEOUT,
        serving_body_timeout_s=BODY_TIMEOUT,
        serving_keepalive_timeout_s=IDLE_TIMEOUT,
        serving_max_in_flight_per_key=PER_KEY,
        serving_max_concurrency=IN_ALL,
    )
    server = fx.server_process(env).start()
    yield server
    server.stop()


def _post(server, body, headers=None, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/score",
        content=json.dumps(body),
        headers={"content-type": "application/json", "X-API-Key": KEY, **(headers or {})},
        timeout=30,
        **kwargs,
    )


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, patience: float = PATIENCE) -> bytes:
    """Everything the service sends until it closes the connection (or ``patience`` runs out)."""
    received, deadline = b"", time.monotonic() + patience
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received + b"<reset>"
        if not chunk:
            return received + b"<closed>"
        received += chunk
    return received + b"<still open>"


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body.split(b"<")[0])


def _stall_bodies(server, key: str, n: int) -> list[socket.socket]:
    """``n`` admitted requests whose bodies never finish (headers sent, 10 of 200 bytes).

    Slots the previous test's stalled clients held are freed once the service has read their
    disconnects: while one is still held a new stall is refused at once, so all are retried.
    """
    deadline = time.monotonic() + PATIENCE
    while True:
        socks = []
        for _ in range(n):
            sock = _connect(server)
            sock.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + f"X-API-Key: {key}\r\nContent-Length: 200\r\n\r\n".encode()
                + b'{"transac'
            )
            socks.append(sock)
        # A probe answered after them means the service has read (and admitted or refused) them.
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        answered, _, _ = select.select(socks, [], [], 0.2)
        if not answered:
            return socks
        for sock in socks:
            sock.close()
        assert time.monotonic() < deadline, "stalled requests still refused after the patience"
        time.sleep(0.2)


def test_headers_trickled_byte_by_byte_are_cut_with_a_json_408(server):
    head = b"POST /v1/score HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 200
    sock = _connect(server)
    received, deadline = b"", time.monotonic() + PATIENCE
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sock.settimeout(0.1)
        try:
            chunk = sock.recv(65536)
            received += chunk
            if not chunk:
                break
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            break
    received += _read_until_closed(sock, 2.0)
    sock.close()
    status, body = _status_and_json(received)
    assert status == 408
    assert "headers" in body["error"]
    assert received.endswith(b"<closed>")


def test_a_stalled_body_is_cut_with_a_json_408_and_the_service_stays_up(server):
    [sock] = _stall_bodies(server, KEY, 1)
    received = _read_until_closed(sock)
    sock.close()
    status, body = _status_and_json(received)
    assert status == 408
    assert "body" in body["error"]
    assert _post(server, {"transaction": TX}).status_code == 200


def test_a_connection_that_sends_nothing_is_closed(server):
    sock = _connect(server)
    assert _read_until_closed(sock) == b"<closed>"
    sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(server):
    sock = _connect(server)
    body = json.dumps({"transaction": TX}).encode()
    sock.sendall(
        b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = _read_until_closed(sock)
    sock.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"<closed>")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "a" * 2_000_000},
        {f"X-Many-{i}": "v" for i in range(2_000)},
    ],
    ids=["2-MB-value", "2000-fields"],
)
def test_oversized_headers_get_a_json_431(server, headers):
    answer = _post(server, {"transaction": TX}, headers)
    assert answer.status_code == 431
    assert set(answer.json()) == {"error"}
    assert _post(server, {"transaction": TX}, {"X-Fine": "a" * 8_000}).status_code == 200


def test_one_key_cannot_take_every_slot_and_429s_carry_retry_after(server):
    stalled = _stall_bodies(server, KEY, PER_KEY)
    try:
        same_key = _post(server, {"transaction": TX})
        other_key = _post(server, {"transaction": TX}, {"X-API-Key": OTHER})
    finally:
        for sock in stalled:
            sock.close()
    assert same_key.status_code == 429
    assert int(same_key.headers["retry-after"]) >= 1
    assert set(same_key.json()) == {"error"}
    assert "in flight" in same_key.json()["error"]
    assert other_key.status_code == 200


def test_the_whole_service_cap_answers_429_with_retry_after_and_spares_the_probes(server):
    stalled = _stall_bodies(server, KEY, PER_KEY) + _stall_bodies(server, OTHER, IN_ALL - PER_KEY)
    try:
        refused = _post(server, {"transaction": TX}, {"X-API-Key": OTHER})
        probe = httpx.get(f"{server.url}/readyz", timeout=30)
    finally:
        for sock in stalled:
            sock.close()
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert set(refused.json()) == {"error"}
    assert probe.status_code == 200
    # Once the stalled clients are gone, their slots are free again.
    deadline = time.monotonic() + PATIENCE
    while _post(server, {"transaction": TX}).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize(
    "content_type",
    ["application/JSON", "Application/Json; Charset=UTF-8", 'application/json; charset="utf8"'],
)
def test_media_types_are_case_insensitive(server, content_type):
    assert _post(server, {"transaction": TX}, {"content-type": content_type}).status_code == 200


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ISO-8859-1"])
def test_a_charset_other_than_utf8_is_415(server, charset):
    answer = _post(
        server, {"transaction": TX}, {"content-type": f"application/json; charset={charset}"}
    )
    assert answer.status_code == 415
    assert "UTF-8" in answer.json()["error"]


@pytest.mark.parametrize("timestamp", ["1714557600", 1714557600, "2018-05-16 10:15:00+00:00"])
def test_timestamps_must_be_iso_8601_strings_with_a_timezone(server, timestamp):
    answer = _post(server, {"transaction": {**TX, "timestamp": timestamp}})
    assert answer.status_code == 400
    [error] = answer.json()["detail"]
    assert error["loc"] == ["transaction", "timestamp"]
    assert error["type"] == "timestamp_format"


def test_crlf_and_nul_from_a_path_never_reach_the_log_raw(server):
    forged = "2026-01-01T00:00:00+0000 [INFO] forged-by-the-client"
    path = f"/v1/score%0d%0a{forged.replace(' ', '%20')}%00tail"
    with _connect(server) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 401")
    log = _log_after(server, b"forged-by-the-client")
    assert b"\x00" not in log
    assert not any(line.startswith(forged.encode()) for line in log.splitlines())
    assert b"\\r\\n" + forged.encode() + b"\\x00tail" in log


def test_a_rejected_body_logs_one_line_with_field_and_type_and_no_value(server):
    secrets = ["-987654.25", '"SECRET-7f3a"']
    bodies = [
        '{"transaction": {**AMOUNT**}}'.replace("**AMOUNT**", _fields(amount=secrets[0])),
        '{"transaction": {**TERMINAL**}}'.replace("**TERMINAL**", _fields(terminal_id=secrets[1])),
    ]
    for body in bodies:
        answer = httpx.post(
            f"{server.url}/v1/score",
            content=body,
            headers={"content-type": "application/json", "X-API-Key": KEY},
            timeout=30,
        )
        assert answer.status_code == 400
    log = _log_after(server, b"transaction.terminal_id")
    assert b"987654" not in log
    assert b"SECRET-7f3a" not in log
    assert b"Traceback" not in log
    assert b"[ERROR]" not in log
    rejected = [line for line in log.splitlines() if b"rejected POST /v1/score: 400" in line]
    assert any(b"transaction.amount greater_than_equal" in line for line in rejected)
    assert any(b"transaction.terminal_id int_type" in line for line in rejected)
    assert all(b"[INFO]" in line for line in rejected)


def _fields(**values: str) -> str:
    """The fields of a valid transaction as JSON text, with some given as raw JSON."""
    fields = {k: json.dumps(v) for k, v in TX.items()} | values
    return ", ".join(f'"{k}": {v}' for k, v in fields.items())


def _log_after(server, marker: bytes, patience: float = 10.0) -> bytes:
    """The server's log once ``marker`` appears in it (log lines are written asynchronously)."""
    deadline = time.monotonic() + patience
    while True:
        log = server.log_path.read_bytes()
        if marker in log or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def _counter(server, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


def test_refusals_of_the_protocol_are_counted(server):
    before = _counter(server, "fraudops_http_refused_requests_total", status="431")
    assert _post(server, {"transaction": TX}, {"X-Big": "a" * 40_000}).status_code == 431
    after = _counter(server, "fraudops_http_refused_requests_total", status="431")
    assert after - before == 1


def test_metrics_count_exactly_while_other_bentoml_servers_start(server, tmp_path):
    # The case: another BentoML server starting empties its Prometheus folder. Started
    # from the same settings, it gets a BentoML home of its own, under the runtime folder.
    home = Path(server.env["FRAUDOPS_HOME"])
    other = ServiceProcess(
        server.env, tmp_path / "echo.log", service="benchmarks.echo_service:Echo", port=free_port()
    ).start()
    try:
        n = 7
        scored = {"name": "fraudops_scored_transactions_total"}
        requests = {
            "name": "bentoml_service_request_total",
            "endpoint": "/v1/score",
            "http_response_code": "200",
        }
        before = [_counter(server, **scored), _counter(server, **requests)]
        for i in range(n):
            body = {"transaction": {**TX, "transaction_id": 900_000 + i}}
            assert _post(server, body).status_code == 200
        after = [_counter(server, **scored), _counter(server, **requests)]
    finally:
        other.stop()
    assert [a - b for a, b in zip(after, before, strict=True)] == [n, n]
    instances = home / "serving" / "bentoml"
    assert {p.name for p in instances.iterdir()} >= {f"port-{server.port}", f"port-{other.port}"}
    assert (instances / f"port-{server.port}" / "prometheus_multiproc_dir").is_dir()
