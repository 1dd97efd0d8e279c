"""Limits on what one request may cost: its body size, and how many go upstream at once.

JSON bodies are read whole and capped where they are read (`body.read_body`). Here: a declared
`Content-Length` over `MAX_REQUEST_BODY_BYTES` is refused before a byte of the body is read, a
chunked body that streams past the limit is cut off, and `MAX_CONCURRENT_UPSTREAM_REQUESTS` (per
server process) turns the request over the limit away with 503 and `Retry-After`, as OpenAI's
clients expect of a busy server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from ..errors import PROXY_BUSY, REQUEST_TOO_LARGE, ProxyError
from ..headers import RequestHeaders


def too_large(limit: int) -> ProxyError:
    return REQUEST_TOO_LARGE.error(limit=limit)


def check_declared_length(headers: RequestHeaders, limit: int) -> None:
    """Refuse a request whose `Content-Length` is over the limit, before reading its body."""
    if headers.content_length is not None and headers.content_length.isdigit() and int(headers.content_length) > limit:
        raise too_large(limit)


async def capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """A streamed body, failing the upstream request once more than `limit` bytes have passed."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        yield chunk


class UpstreamSlots:
    """A count of requests in flight upstream, refusing one more than `limit` (0: no limit).

    One instance serves every request of a process: the event loop runs one task at a time, so
    the count needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def __enter__(self) -> None:
        if self.limit and self.active >= self.limit:
            raise PROXY_BUSY.error(limit=self.limit)
        self.active += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.active -= 1
