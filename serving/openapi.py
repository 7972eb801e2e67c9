"""The OpenAPI document of the service (``GET /docs.json``, shown by the Swagger page at ``/``).

BentoML's own document has its default title and version, no security scheme and the answers
of a generic BentoML service (400, 404, 500). This one starts from it (paths, request and
response schemas come from the pydantic models) and describes the real contract: the
``X-API-Key`` scheme, so that "Try it out" can send a key, and every answer the edge and the
routes give, with the limits of the settings in force.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
from typing import Any

from fraudops.settings import Settings, get_settings
from serving.guard import ASGIApp, Receive, Scope, Send

SPEC_PATH = "/docs.json"
SECURITY_SCHEME = "ApiKey"
PACKAGE = "fraudops"
ERROR = {"$ref": "#/components/schemas/Error"}
VALIDATION_ERROR = {"$ref": "#/components/schemas/ValidationError"}
# BentoML's generic components that the real contract does not use.
GENERIC_COMPONENTS = ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse")

SCHEMAS = {
    "Error": {
        "type": "object",
        "title": "Error",
        "description": "Every error answer: what was wrong and what to do.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "ValidationError": {
        "type": "object",
        "title": "ValidationError",
        "description": "A body that does not match the schema; `detail[].loc` names each field.",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "example": "1 validation error for ScoreRequest"},
            "detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "properties": {
                        "loc": {
                            "type": "array",
                            "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                            "example": ["transaction", "amount"],
                        },
                        "msg": {"type": "string"},
                        "type": {"type": "string", "example": "greater_than_equal"},
                    },
                },
            },
        },
    },
}


def package_version(bento_version: str | None = None) -> str:
    """The installed package's version; in a bento, where it is not installed, the bento's."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        if bento_version:
            return bento_version
        raise


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    return {"description": description, "content": content, **extra}


def edge_responses(settings: Settings) -> dict[str, Any]:
    """The answers every ``/v1/`` route can give besides its own."""
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    return {
        "400": _json(
            "Malformed JSON, or a field of the wrong type or out of range (`detail[].loc` names "
            "it); an invalid HTTP request gets `Error`.",
            VALIDATION_ERROR,
        ),
        "401": _json("Missing or invalid `X-API-Key`.", ERROR),
        "408": _json(
            f"Headers not received within {settings.serving_header_timeout_s:g} s of the first "
            f"byte, or the body within {settings.serving_body_timeout_s:g} s of the headers.",
            ERROR,
        ),
        "413": _json(f"Body larger than {settings.serving_max_body_bytes} bytes.", ERROR),
        "415": _json(
            "Content-Type other than `application/json` (any case), or a charset other than UTF-8.",
            ERROR,
        ),
        "429": _json(
            f"Over the key's rate ({settings.serving_rate_limit_per_s:g} tokens/s, bursts of "
            f"{settings.serving_rate_limit_burst}; a request costs one token per started "
            f"{settings.serving_rate_limit_bytes_per_token} bytes of body), more than "
            f"{settings.serving_max_in_flight_per_key} requests of the key in flight, or "
            f"{settings.serving_max_concurrency} in flight in all.",
            ERROR,
            headers=retry_after,
        ),
        "431": _json(
            f"Request line and headers over {settings.serving_max_header_bytes} bytes or "
            f"{settings.serving_max_headers} fields.",
            ERROR,
        ),
        "503": _json("No champion model loaded, or the prediction-log journal failing.", ERROR),
        "504": _json("Not answered within the request timeout.", ERROR),
    }


def _description(settings: Settings) -> str:
    return (
        "Card-fraud scoring: Feast online features and the MLflow champion, canary and shadow "
        "routing, every answer logged.\n\n"
        "Every `/v1/` route needs an `X-API-Key` header (the **Authorize** button). Bodies are "
        "UTF-8 JSON; unknown fields are refused; timestamps are ISO-8601 with a timezone. "
        'Every error answer is JSON `{"error": ...}` (400s add `detail`); a 429 carries '
        "`Retry-After`. The limits quoted in the answers are this instance's settings."
    )


def build_spec(bentoml_spec: dict[str, Any], settings: Settings, version: str) -> dict[str, Any]:
    """The real contract, from BentoML's document of the service."""
    spec = json.loads(json.dumps(bentoml_spec))  # a copy, with the status codes as strings
    spec["info"] = {
        "title": "fraudops scoring API",
        "version": version,
        "description": _description(settings),
    }
    components = spec.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "One of the keys of `FRAUDOPS_SERVING_API_KEYS`.",
        }
    }
    schemas = components.setdefault("schemas", {})
    for name in GENERIC_COMPONENTS:
        schemas.pop(name, None)
    schemas.update(copy.deepcopy(SCHEMAS))
    common = edge_responses(settings)
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for operation in item.values():
            ok = operation["responses"]["200"]
            operation["responses"] = {"200": ok, **copy.deepcopy(common)}
            operation["security"] = [{SECURITY_SCHEME: []}]
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
    reload = spec["paths"].get("/v1/admin/reload", {}).get("post")
    if reload is not None:
        reload["responses"]["409"] = _json(
            "The champion served is not the one the registry names (no alias, a missing "
            "version, artifacts that do not load); the body says what is served.",
            ERROR,
        )
        reload["responses"]["503"] = _json("The registry cannot be read.", ERROR)
    batch = spec["paths"].get("/v1/score/batch", {}).get("post")
    if batch is not None:
        batch["responses"]["400"]["description"] += (
            f" A batch over {settings.serving_max_batch} transactions names `transactions`."
        )
    _nullable_features_as_of(spec)
    return spec


def _nullable_features_as_of(spec: dict[str, Any]) -> None:
    """``features_as_of`` is null when no stored row was used (BentoML drops the null)."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            prop = node.get("properties", {}).get("features_as_of")
            if isinstance(prop, dict) and "$ref" not in prop:
                prop["nullable"] = True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(spec)


class OpenAPIMiddleware:
    """Answers ``GET /docs.json`` with :func:`build_spec` (built once per worker)."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._body: bytes | None = None

    def _spec_body(self) -> bytes:
        if self._body is None:
            bento = self.service.bento
            version = package_version(bento.tag.version if bento is not None else None)
            spec = build_spec(self.service.openapi_spec.asdict(), get_settings(), version)
            self._body = json.dumps(spec).encode()
        return self._body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the document; pass everything else on."""
        if scope["type"] != "http" or scope["path"] != SPEC_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = self._spec_body()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
