"""HTTP/1.1 clients on raw asyncio streams: SSE timing, long-lived streams and large bodies.

Raw streams keep the client's own cost to a few microseconds per event, so with hundreds of
streams the time measured is the server's, not the client's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .payloads import HEADERS

_EVENT = b"data: "


@dataclass(slots=True)
class StreamTiming:
    first_event: float  # seconds from the start of the request to the first SSE event
    gaps: list[float] = field(default_factory=list)  # seconds between consecutive events


class Connection:
    """One keep-alive client connection to 127.0.0.1:port, opened on first use."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        """Send a request; return its status and the whole body (chunked or not)."""
        status, chunked, length = await self._send(target, body)
        reader = self._reader
        assert reader is not None
        if not chunked:
            return status, await reader.readexactly(length)
        parts = [chunk async for chunk in self._chunks()]
        return status, b"".join(parts)

    async def stream(self, target: str, body: bytes, on_first: Callable[[], None] | None = None) -> StreamTiming:
        start = time.perf_counter()
        status, chunked, _ = await self._send(target, body)
        if status != 200 or not chunked:
            raise RuntimeError(f"expected a 200 event stream from {target}, got {status}")
        arrivals: list[float] = []
        async for chunk in self._chunks():
            now = time.perf_counter()
            if not arrivals and on_first is not None:
                on_first()
            arrivals.extend([now] * chunk.count(_EVENT))
        if not arrivals:
            raise RuntimeError(f"the stream from {target} carried no event")
        return StreamTiming(arrivals[0] - start, [b - a for a, b in itertools.pairwise(arrivals)])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def _send(self, target: str, body: bytes) -> tuple[int, bool, int]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port, limit=1 << 20)
        assert self._reader is not None
        head = [f"POST {target} HTTP/1.1", f"host: 127.0.0.1:{self._port}"]
        head += [f"{name}: {value}" for name, value in HEADERS.items()]
        head.append(f"content-length: {len(body)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = await self._reader.readuntil(b"\r\n\r\n")
        lines = response.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        chunked = "chunked" in fields.get("transfer-encoding", "")
        return status, chunked, int(fields.get("content-length", "0"))

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader = self._reader
        assert reader is not None
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            yield (await reader.readexactly(size + 2))[:-2]


async def one_stream(port: int, target: str, body: bytes) -> StreamTiming:
    connection = Connection(port)
    try:
        return await connection.stream(target, body)
    finally:
        connection.close()
