"""The request timeout middleware: 504 for a late answer, untouched answers otherwise."""

from __future__ import annotations

import asyncio
import json

from serving.guard import RequestTimeoutMiddleware, install_request_timeout


async def _call(app, timeout: float) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await RequestTimeoutMiddleware(app, timeout)({"type": "http"}, receive, send)
    return sent


async def _answer_after(seconds: float, scope, receive, send) -> None:
    await asyncio.sleep(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_request_answering_in_time_passes_through() -> None:
    async def app(scope, receive, send):
        await _answer_after(0.01, scope, receive, send)

    sent = asyncio.run(_call(app, timeout=1.0))
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"ok"


def test_a_request_without_an_answer_in_time_gets_a_json_504_and_is_cancelled() -> None:
    state = {"cancelled": False}

    async def app(scope, receive, send):
        try:
            await _answer_after(5.0, scope, receive, send)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    sent = asyncio.run(_call(app, timeout=0.05))
    assert sent[0]["status"] == 504
    assert "within 0.05 seconds" in json.loads(sent[1]["body"])["error"]
    assert state["cancelled"]


def test_the_timer_is_cancelled_once_the_request_ends() -> None:
    async def scenario():
        async def app(scope, receive, send):
            await _answer_after(0.0, scope, receive, send)

        await _call(app, timeout=30.0)
        loop = asyncio.get_running_loop()
        # Nothing is left scheduled for 30 s later (the timer of the finished request).
        return [h for h in loop._scheduled if not h.cancelled()]

    assert asyncio.run(scenario()) == []


def test_bentoml_builds_its_apps_with_the_replacement_middleware() -> None:
    # The replacement works by patching a BentoML module: this fails if an upgrade moves the
    # class or stops looking it up there when assembling an app.
    from bentoml._internal.server.base_app import BaseAppFactory

    class ProbeApp(BaseAppFactory):
        name = "probe"

    install_request_timeout()
    middlewares = ProbeApp(timeout=5.0).middlewares
    assert [m.cls for m in middlewares] == [RequestTimeoutMiddleware]
    assert middlewares[0].kwargs == {"timeout": 5.0}
