"""The real service on loopback: scoring, security, bad input, canary, prediction log."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from lakehouse.delta import read_table
from tests.serving import fixtures as fx

KEY = "key-main"
FLOOD_KEY = "key-flood"
DAY = "2018-05-16T{hour:02d}:15:00Z"  # the day after the last simulated one
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry, feast_repo):
    """One canary service (30 % to the challenger), strict limits, a fast-flushing log."""
    home = tmp_path_factory.mktemp("service")
    env = fx.service_env(
        home,
        registry,
        feast_repo,
        serving_api_keys=[KEY, FLOOD_KEY],
        # Low refill, large burst: the flood test must exceed it whatever the machine's speed.
        serving_rate_limit_per_s=1,
        serving_rate_limit_burst=60,
        # Every request costs one token here, batches included: the budget counts requests.
        serving_rate_limit_bytes_per_token=1_048_576,
        serving_mode="canary",
        serving_canary_share=0.3,
        serving_log_flush_s=0.3,
        serving_feature_timeout_ms=2_000,
        serving_max_body_bytes=400_000,
        serving_max_amount=50_000,
    )
    server = fx.server_process(env).start()
    yield server
    server.stop()


def _post(server, path: str, body, headers=HEADERS) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(
        f"{server.url}{path}",
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=60,
    )


# Each test sends its own block of transaction ids, so its prediction-log rows can be told apart.
BLOCK = 100_000
ID_BLOCKS = {
    name: (i + 1) * BLOCK
    for i, name in enumerate(
        ["happy", "batch", "unknown-customer", "stale", "auth", "over", "flood", "canary", "logged"]
    )
}


def _transactions(world, n: int, prefix: str) -> list[dict]:
    rng = np.random.default_rng(len(prefix) + n)
    return [
        fx.transaction(
            ID_BLOCKS[prefix] + i,
            int(rng.integers(1, 61)),
            int(rng.integers(1, 121)),
            float(round(rng.uniform(1, 300), 2)),
            DAY.format(hour=int(rng.integers(0, 24))),
        )
        for i in range(n)
    ]


def test_scores_match_the_registered_model_on_reference_features(server, registry, world):
    rows = _transactions(world, 12, "happy")
    answers = [_post(server, "/v1/score", {"transaction": row}) for row in rows]
    assert [a.status_code for a in answers] == [200] * len(rows)
    bodies = [a.json() for a in answers]
    expected = fx.expected_inputs(world, rows)
    for i, body in enumerate(bodies):
        assert body["transaction_id"] == rows[i]["transaction_id"]
        assert body["degraded"] is False
        assert body["features_as_of"] == "2018-05-16T00:00:00Z"
        model = fx.load_version(registry, body["model_version"])
        want = fx.as_array(model.predict(expected.iloc[[i]].astype(model_dtypes(model))))[0]
        assert body["score"] == pytest.approx(want, abs=1e-9)
        decision = "decline" if want >= 0.9 else "review" if want >= 0.5 else "approve"
        assert body["decision"] == decision


def model_dtypes(model) -> dict:
    """The input dtypes of a pyfunc's signature."""
    schema = model.metadata.get_input_schema()
    return dict(zip(schema.input_names(), schema.numpy_types(), strict=True))


def test_batch_answers_in_input_order_and_agrees_with_single_scoring(server, world):
    rows = _transactions(world, 40, "batch")
    answer = _post(server, "/v1/score/batch", {"transactions": rows})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["transaction_id"] for r in results] == [r["transaction_id"] for r in rows]
    single = _post(server, "/v1/score", {"transaction": rows[17]}).json()
    assert results[17]["score"] == pytest.approx(single["score"], abs=1e-12)


def test_unknown_entity_is_scored_degraded_with_the_fallback(server):
    row = fx.transaction(ID_BLOCKS["unknown-customer"], 10_000, 5, 20.0, DAY.format(hour=12))
    answer = _post(server, "/v1/score", {"transaction": row})
    assert answer.status_code == 200
    assert answer.json()["degraded"] is True
    assert answer.json()["features_as_of"] is None


def test_a_row_older_than_the_ttl_is_not_reused(server):
    # The store holds rows as of 2018-05-16 00:00; two days later they are expired.
    row = fx.transaction(ID_BLOCKS["stale"], 3, 5, 20.0, "2018-05-18T12:00:00Z")
    answer = _post(server, "/v1/score", {"transaction": row})
    assert answer.status_code == 200
    assert answer.json()["degraded"] is True
    assert answer.json()["features_as_of"] is None
    logged = _wait_for_log(server, "stale", 1)
    entity = [c for c in logged.columns if c.startswith(("customer_id_", "terminal_id_"))]
    assert len(entity) == 12
    assert (logged[entity] == 0).all().all()  # the fallback, not the expired values


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_missing_or_wrong_api_key_is_401_json(server, headers):
    row = fx.transaction(ID_BLOCKS["auth"], 1, 1, 1.0, DAY.format(hour=1))
    answer = _post(server, "/v1/score", {"transaction": row}, headers=headers)
    assert answer.status_code == 401
    assert "X-API-Key" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transaction": {"amount": 1}}, "transaction_id"),
        ({"transaction": fx.transaction(1, 1, 1, -5.0, DAY.format(hour=1))}, "amount"),
        ({"transaction": fx.transaction(1, 1, 1, 60_000.0, DAY.format(hour=1))}, "amount"),
        ({"transaction": fx.transaction(1, 0, 1, 5.0, DAY.format(hour=1))}, "customer_id"),
        ({"transaction": fx.transaction(1, 1, 1, 5.0, "2018-05-16 01:00")}, "timestamp"),
        ({"transaction": {**fx.transaction(1, 1, 1, 5.0, DAY.format(hour=1)), "x": 1}}, "x"),
        ({"transaction": fx.transaction(1, 1, "7", 5.0, DAY.format(hour=1))}, "terminal_id"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(server, body, field):
    answer = _post(server, "/v1/score", body)
    assert answer.status_code == 400
    assert field in [loc for d in answer.json()["detail"] for loc in d["loc"]]


@pytest.mark.parametrize(
    "content", [b"not json", b"", b"[1, 2]", b'{"transaction": null}', b"\xff\xfe"]
)
def test_malformed_bodies_are_400_not_500(server, content):
    assert _post(server, "/v1/score", content).status_code == 400


def test_non_json_content_type_is_415(server):
    answer = httpx.post(
        f"{server.url}/v1/score", content=b"a=b", headers={**HEADERS, "content-type": "text/plain"}
    )
    assert answer.status_code == 415


def test_oversized_body_is_413_and_the_service_stays_up(server):
    answer = _post(server, "/v1/score", b'{"transaction": "' + b"x" * 500_000 + b'"}')
    assert answer.status_code == 413
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_batch_over_the_limit_is_400(server, world):
    rows = _transactions(world, 1_001, "over")
    answer = _post(server, "/v1/score/batch", {"transactions": rows})
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == ["transactions"]


def test_rate_limit_is_429_with_retry_after_per_key(server):
    row = {"transaction": fx.transaction(ID_BLOCKS["flood"], 1, 1, 1.0, DAY.format(hour=1))}
    with httpx.Client(timeout=30) as client:
        codes, retry_after = [], None
        for _ in range(250):
            answer = client.post(
                f"{server.url}/v1/score", json=row, headers={"X-API-Key": FLOOD_KEY}
            )
            codes.append(answer.status_code)
            if answer.status_code == 429:
                retry_after = answer.headers["retry-after"]
                break
        other_key = client.post(f"{server.url}/v1/score", json=row, headers=HEADERS)
    assert 429 in codes
    assert int(retry_after) >= 1
    assert other_key.status_code == 200


def test_canary_share_within_tolerance_and_logged_with_both_scores(server, world):
    rows = _transactions(world, 1_000, "canary")
    answer = _post(server, "/v1/score/batch", {"transactions": rows})
    versions = np.array([r["model_version"] for r in answer.json()["results"]])
    share = (versions == "2").mean()
    assert set(versions) == {"1", "2"}
    assert abs(share - 0.3) < 0.05
    log = _wait_for_log(server, "canary", 1_000)
    by_challenger = log[log["served_by"] == "challenger"]
    assert len(by_challenger) == (versions == "2").sum()
    assert by_challenger["challenger_score"].notna().all()
    assert (by_challenger["score"] == by_challenger["challenger_score"]).all()
    assert log["champion_score"].notna().all()


def test_prediction_log_holds_inputs_features_and_outcome(server, world):
    rows = _transactions(world, 5, "logged")
    for row in rows:
        assert _post(server, "/v1/score", {"transaction": row}).status_code == 200
    log = _wait_for_log(server, "logged", 5).sort_values("transaction_id")
    expected = fx.expected_inputs(world, sorted(rows, key=lambda r: r["transaction_id"]))
    np.testing.assert_allclose(log[expected.columns].to_numpy(), expected.to_numpy())
    assert (log["latency_ms"] > 0).all()
    assert not log["degraded"].any()
    assert set(log["decision"]) <= {"approve", "review", "decline"}


def test_probes_and_metrics(server):
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'fraudops_model_version{alias="champion",version="1"} 1.0' in metrics
    assert 'endpoint="/v1/score",http_response_code="401"' in metrics
    assert "request_duration_seconds_bucket" in metrics


def _wait_for_log(server, prefix: str, n: int, timeout: float = 30.0):
    uri = f"{server.env['FRAUDOPS_HOME']}/lakehouse/serving/prediction_log"
    deadline = time.monotonic() + timeout
    while True:
        try:
            frame = read_table(uri).to_pandas()
            frame = frame[frame["transaction_id"] // BLOCK == ID_BLOCKS[prefix] // BLOCK]
            if len(frame) >= n or time.monotonic() > deadline:
                assert len(frame) == n
                return frame
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
