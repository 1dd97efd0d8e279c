"""Errors the proxy makes itself, shaped like OpenAI's so LibreChat shows their message to the user."""

from __future__ import annotations

import orjson

from .asgi import Send

ERROR_TYPE = "portkey_user_proxy_error"


class ProxyError(Exception):
    def __init__(self, status: int, message: str, code: str, *, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


def error_body(message: str, code: str) -> bytes:
    """The one OpenAI-style error body: `{"error": {"message", "type", "code"}}`."""
    return orjson.dumps({"error": {"message": message, "type": ERROR_TYPE, "code": code}})


async def send_error(send: Send, error: ProxyError, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = error_body(error.message, error.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *error.headers,
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
