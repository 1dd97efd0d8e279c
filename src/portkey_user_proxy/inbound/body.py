"""Request bodies: read JSON ones once, stream all others, and ask for stream usage.

JSON bodies of the routes the proxy knows hold the user id, so they are read whole, up to a limit;
only the few fields the proxy needs are parsed (see `body_fields`). Other bodies (multipart audio,
files, unknown paths) stream to the upstream as they arrive, never held in memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from ..asgi import Receive

_INCLUDE_USAGE = b'"stream_options":{"include_usage":true},'
# Bodies up to this size may be parsed whole into Python objects (~10x the JSON); larger ones never.
FULL_PARSE_LIMIT = 4 * 1024 * 1024


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
    # orjson refuses valid JSON it cannot hold exactly (integers beyond 64 bits, 1e400). JSON is UTF-8
    # (RFC 8259 §8.1): Python would guess UTF-16 or UTF-32 from bytes, where the upstream sees no JSON.
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None


def with_stream_usage(body: bytes, fields: Mapping[str, Any]) -> bytes:
    """The body of a streaming chat completion, asking for the final usage chunk when it does not.

    OpenAI-style streams carry token usage only when asked, and Portkey needs it to cost the
    request. A client's explicit `include_usage: false` is respected. `fields` holds at least the
    body's `stream` and `stream_options`; merging into an existing `stream_options` rewrites the
    whole body, which is done only up to `FULL_PARSE_LIMIT`.
    """
    if fields.get("stream") is not True:
        return body
    options = fields.get("stream_options")
    if "stream_options" not in fields:
        # Splice the field in after the opening brace: the client's bytes stay exactly as sent.
        brace = body.index(b"{") + 1
        return body[:brace] + _INCLUDE_USAGE + body[brace:]
    if options is None or (isinstance(options, dict) and "include_usage" not in options):
        document = _exact_json_object(body) if len(body) <= FULL_PARSE_LIMIT else None
        if document is None:
            return body  # too large or too unusual to rebuild: better no usage than a stalled proxy or a changed body
        merged = {**(options or {}), "include_usage": True}
        try:
            return orjson.dumps({**document, "stream_options": merged})
        except orjson.JSONEncodeError:
            return body  # a value orjson cannot write back exactly: better no usage than a changed body
    return body


def _exact_json_object(body: bytes) -> dict[str, Any] | None:
    # Only what orjson reads it writes back as it was: Python's parser takes NaN and 1e400, which
    # would come back as `null`, turning a request the upstream refuses into one it runs.
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
