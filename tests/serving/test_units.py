"""Units of the serving package that need no server: schemas, guard, routing, features, log."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pytest
from pydantic import ValidationError

from fraudops.contracts import ENTITY_FEATURES
from lakehouse.delta import read_table
from serving.features import FeatureSourceError, GuardedFeatures, OnlineRows
from serving.guard import TokenBuckets
from serving.prediction_log import SCHEMA, PredictionLog
from serving.schemas import ScoreRequest
from serving.scoring import canary_bucket, decide
from tests.serving.fixtures import log_rows

GOOD = {
    "transaction_id": 1,
    "customer_id": 3,
    "terminal_id": 5,
    "amount": 42.5,
    "timestamp": "2018-05-16T03:00:00+02:00",
}


def _parse(body: dict) -> ScoreRequest:
    """Validate as the service does: from the JSON bytes of the request."""
    return ScoreRequest.model_validate_json(json.dumps(body))


def test_request_schema_accepts_a_valid_transaction_in_utc():
    request = _parse({"transaction": GOOD})
    assert request.transaction.timestamp == dt.datetime(2018, 5, 16, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -0.01}, "amount"),
        ({"amount": "12"}, "amount"),
        ({"amount": 2e9}, "amount"),
        ({"customer_id": 0}, "customer_id"),
        ({"terminal_id": 2**63}, "terminal_id"),
        ({"customer_id": True}, "customer_id"),
        ({"transaction_id": "1"}, "transaction_id"),
        ({"transaction_id": -1}, "transaction_id"),
        ({"transaction_id": 2**63}, "transaction_id"),
        ({"timestamp": "2018-05-16T03:00:00"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_request_schema_rejects_bad_fields_by_name(change, field):
    with pytest.raises(ValidationError) as info:
        _parse({"transaction": {**GOOD, **change}})
    assert info.value.errors()[0]["loc"] == ("transaction", field)


def test_request_schema_rejects_non_finite_amounts_in_json():
    body = '{"transaction": {"transaction_id": 1, "customer_id": 1, "terminal_id": 1, '
    body += '"amount": NaN, "timestamp": "2018-05-16T03:00:00Z"}}'
    with pytest.raises(ValidationError):
        ScoreRequest.model_validate_json(body)


def test_token_bucket_allows_the_burst_then_asks_to_wait():
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", now=0.0) == pytest.approx(0.5)
    assert buckets.take("other", now=0.0) == 0.0
    assert buckets.take("k", now=0.6) == 0.0


def test_decisions_follow_the_thresholds():
    scores = np.array([0.0, 0.49, 0.5, 0.89, 0.9, 1.0])
    assert decide(scores, 0.5, 0.9).tolist() == [
        "approve",
        "approve",
        "review",
        "review",
        "decline",
        "decline",
    ]


def test_canary_bucket_is_stable_and_uniform():
    buckets = np.array([canary_bucket(i) for i in range(20_000)])
    assert canary_bucket(7) == buckets[7]
    assert (buckets >= 0).all() and (buckets < 1).all()
    assert abs((buckets < 0.2).mean() - 0.2) < 0.02


WHEN = np.array(["2018-05-16T10:00:00"] * 2, dtype="datetime64[us]")


class _Source:
    """An online store stand-in: answers from a dict, or fails, or hangs."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0

    def lookup(self, customer_ids, terminal_ids, when) -> OnlineRows:
        self.calls += 1
        if self.mode == "down":
            raise FeatureSourceError("connection refused")
        if self.mode == "slow":
            time.sleep(2.5)  # longer than both the lookup and the readiness timeouts
        n = len(customer_ids)
        values = np.full((n, len(ENTITY_FEATURES)), 7.0)
        unknown = np.array(customer_ids) > 100
        values[unknown, :6] = np.nan
        stamp = dt.datetime(2018, 5, 16, tzinfo=dt.UTC).timestamp()
        missing = np.zeros(n, dtype=bool)
        return OnlineRows(values, missing, np.where(unknown, np.nan, stamp), np.full(n, stamp))

    def ping(self) -> None:
        self.lookup([1], [1], None)


def test_guarded_features_fill_unknown_entities_and_flag_them():
    guarded = GuardedFeatures(_Source("up"), timeout_s=1.0, retry_s=5.0)
    result = guarded.fetch([1, 500], [1, 2], WHEN)
    assert result.missing.tolist() == [False, True]
    assert result.values[0].tolist() == [7.0] * 12
    assert result.values[1].tolist() == [0.0] * 6 + [7.0] * 6
    assert result.as_of[0] == dt.datetime(2018, 5, 16, tzinfo=dt.UTC)
    assert result.as_of[1] is None


@pytest.mark.parametrize("mode", ["down", "slow"])
def test_guarded_features_fall_back_when_the_store_fails_and_pause_lookups(mode):
    source = _Source(mode)
    guarded = GuardedFeatures(source, timeout_s=0.05, retry_s=60.0)
    first = guarded.fetch([1, 2], [1, 2], WHEN)
    assert first.missing.all() and (first.values == 0).all() and first.store_error
    for _ in range(guarded.breaker.min_calls + 3):
        assert guarded.fetch([1], [1], WHEN).missing.all()
    assert source.calls <= guarded.breaker.min_calls  # then no request waited on a down store
    assert guarded.breaker.state == "open"
    assert not guarded.ready()


def _wait_until(condition, timeout: float = 30.0) -> None:
    """Poll ``condition`` (the writer is a thread); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_prediction_log_writes_on_size_and_on_close(tmp_path):
    uri = str(tmp_path / "prediction_log")
    log = PredictionLog(uri, batch_rows=10, flush_s=3600)
    log.append(log_rows(4, 0))
    assert log.pending_rows == 4
    log.append(log_rows(6, 10))  # reaches the batch size: the writer thread wakes up
    _wait_until(lambda: log.rows_written == 10)
    assert read_table(uri).num_rows == 10
    log.append(log_rows(3, 20))
    assert log.close() == 3
    table = read_table(uri)
    assert table.num_rows == 13
    assert table.schema.remove_metadata().equals(SCHEMA, check_metadata=False)
    frame = table.to_pandas()
    assert frame["challenger_score"].isna().all()
    assert frame["scored_date"].astype(str).unique().tolist() == ["2026-01-02"]


def test_prediction_log_writes_on_time(tmp_path):
    uri = str(tmp_path / "prediction_log")
    log = PredictionLog(uri, batch_rows=1_000, flush_s=0.2)
    log.append(log_rows(2, 0))
    _wait_until(lambda: log.rows_written == 2)
    assert read_table(uri).num_rows == 2
    log.close()


def test_prediction_log_keeps_rows_when_a_write_fails(tmp_path):
    blocked = tmp_path / "prediction_log"
    blocked.write_text("not a directory")  # the store is unusable for now
    log = PredictionLog(str(blocked), batch_rows=1, flush_s=3600)
    log.append(log_rows(3, 0))  # a full buffer: the write fails, the caller is not hurt
    _wait_until(lambda: log.failed_writes >= 1)
    assert log.pending_rows == 3
    blocked.unlink()
    assert log.close() == 3
    assert read_table(str(blocked)).num_rows == 3


def test_prediction_log_keeps_each_calls_own_shared_values(tmp_path):
    uri = str(tmp_path / "prediction_log")
    log = PredictionLog(uri, batch_rows=1_000, flush_s=3600)
    first = log_rows(2, 0)
    second = {
        **log_rows(3, 10),
        "scored_at": dt.datetime(2026, 1, 3, 0, 0, 1, tzinfo=dt.UTC),
        "routing": "shadow",
        "challenger_version": "2",
        "challenger_score": np.full(3, 0.5),
        "batch_size": 3,
    }
    log.append(first)
    log.append(second)
    assert log.close() == 5  # one write of both calls
    frame = read_table(uri).to_pandas().sort_values("transaction_id")
    assert frame["routing"].tolist() == ["champion"] * 2 + ["shadow"] * 3
    assert frame["challenger_version"].tolist() == [None] * 2 + ["2"] * 3
    assert frame["batch_size"].tolist() == [2, 2, 3, 3, 3]
    assert frame["scored_date"].astype(str).tolist() == ["2026-01-02"] * 2 + ["2026-01-03"] * 3
    assert frame["challenger_score"].isna().tolist() == [True] * 2 + [False] * 3
