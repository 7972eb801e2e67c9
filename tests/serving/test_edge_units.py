"""Units of the HTTP edge: media types, admission, log hygiene, the protocol's installation."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from serving.edge_admission import Admission, Refusal, Ticket
from serving.edge_logging import OneLineFilter, RejectedInputFilter, escape
from serving.guard import media_type_problem
from serving.http_protocol import EdgeHttpProtocol, install_http_protocol
from serving.schemas import ScoreRequest


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        (b"application/json", False),
        (b"APPLICATION/JSON", False),
        (b"application/json; charset=UTF-8", False),
        (b"application/json;CHARSET=utf8", False),
        (b'application/json; charset="utf-8"; q=1', False),
        (b"application/json; charset=latin-1", True),
        (b"application/json; charset=utf-16", True),
        (b"text/plain", True),
        (b"application/jsonx", True),
        (b"application/vnd.bentoml+pickle", True),
    ],
)
def test_media_types(content_type, refused):
    assert (media_type_problem(content_type) is not None) is refused


def _admission(**limits) -> Admission:
    values = {
        "rate_per_s": 1_000.0,
        "burst": 1_000,
        "max_in_flight": 4,
        "max_in_flight_per_key": 2,
    } | limits
    return Admission(["a", "b"], **values)


def test_a_key_is_capped_in_flight_and_released_slots_are_reused():
    admission = _admission()
    a = admission.valid_key([(b"x-api-key", b"a")])
    first, second = admission.admit(a), admission.admit(a)
    third = admission.admit(a)
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert isinstance(third, Refusal) and third.reason == "key_in_flight"
    assert third.headers == [("retry-after", "1")]
    assert isinstance(admission.admit(b"b"), Ticket)  # another key is not held back
    admission.release(first)
    assert isinstance(admission.admit(a), Ticket)


def test_the_whole_service_cap_counts_keyless_requests_too():
    admission = _admission()
    tickets = [admission.admit(None) for _ in range(4)]
    refusal = admission.admit(b"a")
    assert all(isinstance(t, Ticket) for t in tickets)
    assert isinstance(refusal, Refusal) and refusal.reason == "service_busy"
    for ticket in tickets:
        admission.release(ticket)
    assert admission.in_flight == 0 and admission.per_key == {}


def test_an_unknown_key_gets_no_bucket_and_no_counter():
    admission = _admission(rate_per_s=1.0, burst=1)
    assert admission.valid_key([(b"x-api-key", b"guess")]) is None
    assert admission.valid_key([(b"x-api-key", b"a")]) == b"a"
    assert admission.valid_key([]) is None


def test_over_the_rate_is_refused_with_a_retry_after_of_at_least_one_second():
    admission = _admission(rate_per_s=0.5, burst=1, max_in_flight_per_key=10)
    admission.release(admission.admit(b"a"))
    refusal = admission.admit(b"a")
    assert isinstance(refusal, Refusal) and refusal.reason == "rate_limit"
    assert int(refusal.retry_after) >= 1


def test_escape_writes_control_characters_as_escapes():
    assert escape("a\r\nb\x00c\x1b[31m\u2028d\te") == "a\\r\\nb\\x00c\\x1b[31m\\u2028d\\te"
    assert escape("plain path /v1/score") == "plain path /v1/score"


def _record(msg: str, *args, exc_info=None, name="test") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def test_a_record_from_request_data_stays_on_one_line():
    record = _record("path=%s status=%d", "/v1/x\r\n2026-01-01 [INFO] forged\x00", 401)
    assert OneLineFilter().filter(record)
    text = logging.Formatter("%(message)s").format(record)
    assert text == "path=/v1/x\\r\\n2026-01-01 [INFO] forged\\x00 status=401"


def test_a_traceback_is_indented_so_no_line_of_it_looks_like_a_record():
    try:
        raise ValueError("bad\n2026-01-01 [INFO] forged line")
    except ValueError:
        import sys

        record = _record("failed", exc_info=sys.exc_info())
    OneLineFilter().filter(record)
    lines = logging.Formatter("%(message)s").format(record).splitlines()
    assert lines[0] == "failed"
    assert all(line.startswith("  ") for line in lines[1:])
    assert any("forged line" in line for line in lines[1:])


def _validation_error() -> ValidationError:
    tx = {"transaction_id": 1, "customer_id": 1, "terminal_id": "4111-1111", "amount": -42.5}
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate({"transaction": {**tx, "timestamp": "1714557600"}})
    return caught.value


def test_a_rejected_request_becomes_one_info_line_with_fields_and_types_only():
    exc = _validation_error()
    record = _record("Exception on %s [%s]", "/v1/score", "POST", exc_info=(type(exc), exc, None))
    assert RejectedInputFilter().filter(record)
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert text.startswith("INFO rejected POST /v1/score: 400 ")
    assert "transaction.terminal_id int_type" in text
    assert "transaction.amount greater_than_equal" in text
    assert "transaction.timestamp timestamp_format" in text
    assert "4111" not in text and "42.5" not in text and "1714557600" not in text


def test_other_exceptions_are_left_to_bentoml():
    exc = RuntimeError("boom")
    record = _record("Exception on %s [%s]", "/v1/score", "POST", exc_info=(type(exc), exc, None))
    assert RejectedInputFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_uvicorn_builds_the_edge_protocol_once_installed():
    # BentoML's worker builds uvicorn.Config without ``http``: the "auto" protocol. This fails
    # if an upgrade of uvicorn stops resolving "auto" through its protocol table.
    import uvicorn

    install_http_protocol()

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError

    config = uvicorn.Config(app=app, log_config=None)
    config.load()
    assert config.http_protocol_class is EdgeHttpProtocol


def test_a_request_costs_tokens_by_its_declared_body_size():
    admission = _admission(burst=100, bytes_per_token=4_096)
    assert admission.cost([(b"content-length", b"150")]) == 1
    assert admission.cost([(b"content-length", b"150000")]) == 37
    assert admission.cost([]) == 1
    assert admission.cost([(b"transfer-encoding", b"chunked")]) == 100  # a full bucket


def test_a_batch_drains_the_bucket_as_much_as_its_size_says():
    admission = _admission(rate_per_s=0.001, burst=100, max_in_flight_per_key=100)
    batch = admission.cost([(b"content-length", b"150000")])
    admitted = [admission.admit(b"a", batch) for _ in range(3)]
    assert [isinstance(a, Ticket) for a in admitted] == [True, True, False]
    assert isinstance(admission.admit(b"a", 1.0), Ticket)  # 26 tokens left for singles


def test_only_rate_limit_refusals_are_held_and_only_when_a_hold_is_set():
    held = _admission(rate_per_s=0.001, burst=1, hold_s=0.5, max_held_per_key=1, max_held=1)
    held.admit(b"a")
    rate_limited = held.admit(b"a")
    assert isinstance(rate_limited, Refusal) and held.holds(rate_limited)
    in_flight = Refusal("key_in_flight", "", 1)
    assert not held.holds(in_flight)
    assert not _admission(rate_per_s=0.001, burst=1, hold_s=0.0).holds(rate_limited)


def test_holds_are_capped_per_key_and_in_all_and_freed_when_sent():
    admission = _admission(hold_s=0.5, max_held_per_key=2, max_held=3)
    assert admission.hold(b"a") and admission.hold(b"a")
    assert not admission.hold(b"a")  # the key's two are held
    assert admission.hold(b"b")
    assert not admission.hold(b"b")  # three in all
    admission.unhold(b"a")
    assert admission.hold(b"b")  # a freed hold is reused
    for key in (b"a", b"b", b"b"):
        admission.unhold(key)
    assert admission.held == 0 and admission.held_per_key == {}


def test_a_held_refusal_is_not_in_flight():
    admission = _admission(rate_per_s=0.001, burst=1, hold_s=0.5, max_held_per_key=8, max_held=8)
    admission.admit(b"a")
    assert admission.hold(b"a")
    assert admission.in_flight == 1 and admission.per_key == {b"a": 1}
