"""Request bodies: read JSON ones once, stream all others, and ask for stream usage.

JSON bodies are small (chat messages, embeddings input) and hold the `user` field, so they are read
whole, up to a limit, and parsed once. Other bodies (multipart audio, files) stream to the upstream
as they arrive, never held in memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from .asgi import Receive

_INCLUDE_USAGE = b'"stream_options":{"include_usage":true},'


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def stream_body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    """Yield the body as it arrives; `done` is set once the last part has been received."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            done.set()
            return


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (the upstream will say why)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = _parse_unusual_json(body)
    return parsed if isinstance(parsed, dict) else None


def _parse_unusual_json(body: bytes) -> object:
    # orjson refuses valid JSON it cannot hold exactly (integers beyond 64 bits, 1e400).
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def with_stream_usage(body: bytes, parsed: Mapping[str, Any]) -> bytes:
    """The body of a streaming chat completion, asking for the final usage chunk when it does not.

    OpenAI-style streams carry token usage only when asked, and Portkey needs it to cost the
    request. A client's explicit `include_usage: false` is respected.
    """
    if parsed.get("stream") is not True:
        return body
    options = parsed.get("stream_options")
    if "stream_options" not in parsed:
        # Splice the field in after the opening brace: the client's bytes stay exactly as sent.
        brace = body.index(b"{") + 1
        return body[:brace] + _INCLUDE_USAGE + body[brace:]
    if options is None or (isinstance(options, dict) and "include_usage" not in options):
        merged = {**(options or {}), "include_usage": True}
        try:
            return orjson.dumps({**parsed, "stream_options": merged})
        except orjson.JSONEncodeError:
            return body  # a value orjson cannot write back exactly: better no usage than a changed body
    return body
