"""Request bodies: read JSON ones once, stream all others.

JSON bodies of the routes the proxy knows hold the user id, so they are read whole, up to a limit;
only the few fields the proxy needs are parsed (see `dialects.fields`). Other bodies (multipart audio,
files, unknown paths) stream to the upstream as they arrive, never held in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..asgi import Receive


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
