"""A client that stops reading its response: the proxy gives up on it and releases Portkey's side."""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.proxy import MakeProxy
from tests.support.scripted_upstream import ScriptedUpstream, read_request

CHUNK = b"x" * 65536


def _endless_download(released: threading.Event) -> ScriptedUpstream:
    """Sends chunks as fast as they are taken, and notes when the proxy drops the connection."""

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        closed = asyncio.ensure_future(reader.read(1))  # b"" once the proxy closes its end
        try:
            while not closed.done():
                writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                await asyncio.wait([asyncio.ensure_future(writer.drain()), closed], return_when=asyncio.FIRST_COMPLETED)
        except ConnectionError:
            pass
        released.set()

    return ScriptedUpstream(script).start()


@contextmanager
def _download_never_read(port: int) -> Iterator[socket.socket]:
    """A client that asks for a download and reads none of it: once the buffers fill, the proxy's send waits."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /v1/files/file-1/content HTTP/1.1\r\nhost: proxy\r\n\r\n")
        yield sock


def _ended(sock: socket.socket, timeout: float) -> bool:
    """Whether the connection ends within `timeout`, seen without reading what is queued for the client."""
    poller = select.poll()
    poller.register(sock, 0)  # no event asked for: only hang-ups and errors are reported
    return bool(poller.poll(timeout * 1000))


def test_a_client_that_stops_reading_releases_the_upstream_connection(make_proxy: MakeProxy) -> None:
    released = threading.Event()
    upstream = _endless_download(released)
    try:
        proxy = make_proxy(portkey_url=upstream.url, response_write_timeout_seconds=1)
        with _download_never_read(proxy.server.port):
            assert released.wait(20), "the upstream connection was held for a client that reads nothing"
        exposition = httpx.get(proxy.url + "/metrics").text
        assert "portkey_user_proxy_open_streams 0.0" in exposition
    finally:
        upstream.stop()


def test_a_client_that_stops_reading_loses_its_connection_and_its_place(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    released = threading.Event()
    upstream = _endless_download(released)
    try:
        proxy = make_proxy(portkey_url=upstream.url, response_write_timeout_seconds=1, max_connections=1)
        with _download_never_read(proxy.server.port) as sock:
            # Reset, not closed after the queued megabytes: those are dropped while the client still reads nothing.
            assert _ended(sock, timeout=20), "the connection stayed open for a client that reads nothing"
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
            # Its place under MAX_CONNECTIONS (1 here) is free for the next client.
            assert httpx.get(proxy.url + "/healthz").status_code == 200
            assert released.wait(20)
    finally:
        upstream.stop()
    assert "cut short a response its client stopped reading" in caplog.text
    assert "without completing response" not in caplog.text  # uvicorn's error for an app that gave up silently
