"""Raw-socket upstreams on loopback, each running a script that answers (or misbehaves) as a test needs.

`run` drives the transport itself against a script in one event loop; `ScriptedUpstream` runs a
script in a thread of its own, for tests that put the whole proxy between a client and the script.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import httpx

from portkey_user_proxy.upstream.transport import LeanTransport
from tests.support.servers import bound_socket

# A script gets each connection's number (from 1) and its streams, and answers as the test needs.
Script = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[h11.Request, bytes] | None:
    """One whole request from the connection, or None when the client closed it."""
    parser = h11.Connection(h11.SERVER)
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            if not data:
                return None
            parser.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)


def ok(body: bytes = b"hello") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset instead of an orderly close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _serve_connections(
    script: Script, counter: list[int], handlers: set[asyncio.Task[None]] | None = None
) -> Callable[..., Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter[0] += 1
        if handlers is not None and (task := asyncio.current_task()) is not None:
            handlers.add(task)
        try:
            await script(counter[0], reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: what the script was testing for, often
        finally:
            writer.close()

    return handle


def run(
    script: Script,
    scenario: Callable[[httpx.AsyncClient, str], Awaitable[Any]],
    transport: LeanTransport | None = None,
    **timeouts: float,
) -> Any:
    """The scenario's result and the number of connections the script saw."""

    async def main() -> Any:
        counter = [0]
        handlers: set[asyncio.Task[None]] = set()
        server = await asyncio.start_server(await _serve_connections(script, counter, handlers), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        timeout = httpx.Timeout(5.0, **timeouts)
        client = httpx.AsyncClient(transport=transport or LeanTransport(), timeout=timeout)
        async with server:
            async with client:
                result = await scenario(client, f"http://127.0.0.1:{port}")
            # The client has closed every connection: each script sees that and ends.
            await asyncio.wait_for(asyncio.gather(*handlers), 10)
        return result, counter[0]

    return asyncio.run(main())


class ScriptedUpstream:
    """A script served on a loopback port from a thread with its own event loop."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._socket = bound_socket()
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._counter = [0]
        self._loop = asyncio.new_event_loop()
        self._serving = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def connections(self) -> int:
        return self._counter[0]

    def start(self) -> ScriptedUpstream:
        self._thread.start()
        self._serving.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._socket.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        handle = self._loop.run_until_complete(_serve_connections(self._script, self._counter))
        server = self._loop.run_until_complete(asyncio.start_server(handle, sock=self._socket))
        self._serving.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()


def forward_proxy(request_lines: list[bytes]) -> Script:
    """A minimal HTTP forward proxy: absolute-form requests and CONNECT tunnels, relayed byte for byte."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0]
        request_lines.append(request_line)
        method, target, _version = request_line.split(b" ")
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            origin_reader, origin_writer = await asyncio.open_connection(host.decode(), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = httpx.URL(target.decode())
            origin_reader, origin_writer = await asyncio.open_connection(url.host, url.port)
            origin_writer.write(head)  # the absolute form, which the origin (uvicorn) accepts as well
        try:
            await asyncio.gather(relay(reader, origin_writer), relay(origin_reader, writer))
        finally:
            origin_writer.close()

    return script
