"""The fake Portkey for stream and body benchmarks: a raw asyncio (uvloop) HTTP/1.1 server.

It reads each request body whole (as a real API does before it answers), then answers with a JSON
chat completion, or with a timed SSE stream when the query asks for one:

    ?events=N&every=MS     N chunk events, one every MS milliseconds (absolute schedule, no drift),
                           then the usage chunk and `data: [DONE]`
    ?events=0&every=MS     chunk events every MS until `POST /end-streams` is received

Run it as `python -m bench.origin PORT`. It prints `ready` once it listens.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import cast
from urllib.parse import parse_qs, urlsplit

import uvloop

COMPLETION = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Our Q3 travel policy: book economy, '
    b'file receipts within 30 days, and get approval for trips over 2,000 EUR."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":412,"completion_tokens":31,"total_tokens":443}}'
)
CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n'
)
USAGE = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":412,"completion_tokens":31,"total_tokens":443}}\n\n'
    b"data: [DONE]\n\n"
)
_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-portkey-trace-id: trace-bench\r\n"
    b"content-length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n"
)
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-portkey-trace-id: trace-bench\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
_END_HEAD = b"HTTP/1.1 204 No Content\r\n\r\n"


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Origin:
    def __init__(self) -> None:
        self.generation = 0  # `POST /end-streams` ends the endless streams started before it


class _Connection(asyncio.Protocol):
    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._buffer = bytearray()
        self._body_left = 0
        self._target = b""
        self._transport: asyncio.Transport | None = None
        self._stream: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._advance():
            pass

    def _advance(self) -> bool:
        """Consume what the buffer holds of the current request; True when a request completed."""
        if self._body_left == 0 and not self._target:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self._buffer[:end]).split(b"\r\n")
            del self._buffer[: end + 4]
            self._target = head[0].split(b" ")[1]
            self._body_left = _content_length(head[1:])
        taken = min(self._body_left, len(self._buffer))
        del self._buffer[:taken]
        self._body_left -= taken
        if self._body_left:
            return False
        target, self._target = self._target, b""
        self._answer(target.decode("latin-1"))
        return True

    def _answer(self, target: str) -> None:
        assert self._transport is not None
        parts = urlsplit(target)
        if parts.path == "/end-streams":
            self._origin.generation += 1
            self._transport.write(_END_HEAD)
            return
        query = parse_qs(parts.query)
        if "every" not in query:
            self._transport.write(_JSON_HEAD + COMPLETION)
            return
        events = int(query.get("events", ["0"])[0])
        self._stream = asyncio.get_running_loop().create_task(self._sse(events, int(query["every"][0]) / 1000))

    async def _sse(self, events: int, every: float) -> None:
        assert self._transport is not None
        transport = self._transport
        transport.write(_SSE_HEAD + _chunked(CHUNK))
        start = time.monotonic()
        generation = self._origin.generation
        sent = 1
        while (sent < events) if events else self._origin.generation == generation:
            await asyncio.sleep(max(0.0, start + sent * every - time.monotonic()))
            if transport.is_closing():
                return
            transport.write(_chunked(CHUNK))
            sent += 1
        transport.write(_chunked(USAGE) + b"0\r\n\r\n")


def _content_length(lines: list[bytes]) -> int:
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(port: int) -> None:
    origin = Origin()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(origin), "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
