"""The one JSON error shape of the service, ``{"error": "..."}``, for ASGI and raw HTTP answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = Iterable[tuple[str, str]]


def error_body(message: str) -> bytes:
    """``{"error": message}`` as bytes."""
    return json.dumps({"error": message}).encode()


def _header_list(body: bytes, headers: Headers) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return raw + [(name.encode(), value.encode()) for name, value in headers]


async def reply(send: Send, status: int, message: str, headers: Headers = ()) -> None:
    """Answer an ASGI request with the JSON error."""
    body = error_body(message)
    headers = _header_list(body, headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def raw_response(status: int, message: str, headers: Headers = ()) -> bytes:
    """A complete HTTP/1.1 response with the JSON error that closes the connection.

    For answers given by the protocol itself, before (or instead of) any ASGI app.
    """
    body = error_body(message)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in _header_list(body, headers)]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def asgi_refusal(status: int, message: str, headers: Headers = ()):
    """An ASGI app that answers every request with this JSON error (keeping the connection)."""

    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        await reply(send, status, message, headers)

    return app
