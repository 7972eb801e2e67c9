"""The OpenAPI document served by the real service: the real contract, usable by Swagger."""

from __future__ import annotations

import importlib.metadata

import httpx
import pytest

from tests.serving import fixtures as fx

KEY = "docs-key"
ROUTES = ("/v1/score", "/v1/score/batch", "/v1/admin/reload")
ERRORS = ("400", "401", "408", "413", "415", "429", "431", "503", "504")


@pytest.fixture(scope="module")
def served(tmp_path_factory, registry, feast_repo):
    """A running service and the document it serves."""
    env = fx.service_env(
        tmp_path_factory.mktemp("openapi"),
        registry,
        feast_repo,
        serving_api_keys=[KEY],
        serving_feature_timeout_ms=2_000,
        serving_max_body_bytes=300_000,
    )
    server = fx.server_process(env).start()
    spec = httpx.get(f"{server.url}/docs.json", timeout=30)
    assert spec.status_code == 200
    yield server, spec.json()
    server.stop()


def test_title_and_version_are_the_projects(served):
    _, spec = served
    assert spec["info"]["title"] == "fraudops scoring API"
    assert spec["info"]["version"] == importlib.metadata.version("fraudops")
    assert "BentoML" not in spec["info"]["description"]


def test_the_api_key_scheme_is_declared_and_required_by_every_v1_route(served):
    _, spec = served
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": schemes["ApiKey"]["description"],
        }
    }
    for route in ROUTES:
        assert spec["paths"][route]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_every_real_answer_is_documented_and_no_generic_one(served):
    _, spec = served
    schemas = spec["components"]["schemas"]
    for route in ROUTES:
        responses = spec["paths"][route]["post"]["responses"]
        assert set(ERRORS) <= set(responses)
        assert "404" not in responses and "500" not in responses
        for status in ERRORS:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas
        assert "Retry-After" in responses["429"]["headers"]
    score = spec["paths"]["/v1/score"]["post"]["responses"]
    assert score["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ValidationError")
    assert "300000 bytes" in score["413"]["description"]  # the limits of this instance
    assert "409" in spec["paths"]["/v1/admin/reload"]["post"]["responses"]


def test_the_documented_errors_match_the_answers(served):
    server, spec = served
    url = f"{server.url}/v1/score"
    no_key = httpx.post(url, json={}, timeout=30)
    invalid = httpx.post(url, json={"transaction": {}}, headers={"X-API-Key": KEY}, timeout=30)
    error_schema = spec["components"]["schemas"]["Error"]
    validation = spec["components"]["schemas"]["ValidationError"]
    assert no_key.status_code == 401
    assert set(no_key.json()) == set(error_schema["properties"])
    assert invalid.status_code == 400
    assert set(validation["required"]) <= set(invalid.json())
    detail_keys = validation["properties"]["detail"]["items"]["required"]
    assert all(set(detail_keys) <= set(d) for d in invalid.json()["detail"])


def test_try_it_out_with_the_declared_scheme_is_answered(served):
    # What Swagger's "Try it out" does once authorized: the scheme's header on the example.
    server, spec = served
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    example = spec["components"]["schemas"]["Transaction"]["properties"]["timestamp"]["examples"]
    body = {"transaction": fx.transaction(77, 3, 5, 12.0, "2018-05-16T10:15:00Z")}
    answer = httpx.post(
        f"{server.url}/v1/score", json=body, headers={scheme["name"]: KEY}, timeout=30
    )
    assert answer.status_code == 200
    assert example == ["2018-05-01T12:00:00Z"]
    assert spec["paths"]["/v1/score"]["post"]["requestBody"]["required"] is True


def test_the_document_is_built_from_bentomls_without_a_server():
    from fraudops.settings import get_settings
    from serving.openapi import build_spec
    from serving.service import FraudScoring

    spec = build_spec(FraudScoring.openapi_spec.asdict(), get_settings(), "9.9.9")
    assert spec["info"]["version"] == "9.9.9"
    assert set(ERRORS) <= set(spec["paths"]["/v1/score"]["post"]["responses"])
    assert "InvalidArgument" not in spec["components"]["schemas"]
