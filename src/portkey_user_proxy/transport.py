"""A lean HTTP/1.1 transport to Portkey for httpx: asyncio protocols and llhttp (httptools).

httpx's default transport (httpcore over anyio and h11) spends most of the proxy's CPU per request:
its pool scans every pooled connection, probing each socket, when a request starts and ends, and
each request goes through several layers of streams and cancel scopes. This transport keeps what a
reverse proxy needs and nothing more: one origin per pool, idle connections on a stack (the event loop
tells a connection when its peer closes, so none is probed), request and response bodies streamed
with flow control both ways. It raises httpx's own exceptions, so the client's callers see no change.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

Origin = tuple[str, str, int]

# A response body paused in the kernel's buffers rather than ours once this much is waiting.
_READ_HIGH_WATER = 1 << 20
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_BODILESS = frozenset({204, 304})


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 256, keepalive_expiry: float = 4.0
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._sweep_timer: asyncio.TimerHandle | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = _origin(request.url)
        connection = self._checkout(origin)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(request, origin, timeouts.get("connect"))
        try:
            return await connection.exchange(request, timeouts.get("write"), timeouts.get("read"))
        except _StaleConnection:
            # The server closed a kept-alive connection as the request went out: the request never
            # reached it, so a replayable request is sent once more on a fresh connection.
            if not reused or not isinstance(request.stream, httpx.ByteStream):
                raise httpx.RemoteProtocolError("the server closed the connection", request=request) from None
            connection = await self._connect(request, origin, timeouts.get("connect"))
            return await connection.exchange(request, timeouts.get("write"), timeouts.get("read"))

    async def aclose(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        for stack in self._idle.values():
            for connection in stack:
                connection.close()
        self._idle.clear()

    def checkin(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        stack = self._idle.setdefault(connection.origin, [])
        stack.append(connection)
        if len(stack) > self._max_idle:
            stack.pop(0).close()  # the stack's bottom holds the longest idle
        if self._sweep_timer is None:
            self._sweep_timer = asyncio.get_running_loop().call_later(self._keepalive_expiry, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle past their keep-alive, so that a burst's connections do not linger."""
        self._sweep_timer = None
        now = time.monotonic()
        for stack in self._idle.values():
            while stack and now - stack[0].idle_since >= self._keepalive_expiry:
                stack.pop(0).close()
        oldest = min((stack[0].idle_since for stack in self._idle.values() if stack), default=None)
        if oldest is not None:
            delay = max(0.05, oldest + self._keepalive_expiry - now)
            self._sweep_timer = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _checkout(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            connection = stack.pop()
            if not connection.closed and now - connection.idle_since < self._keepalive_expiry:
                return connection
            connection.close()
        return None

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        return self._ssl_context

    async def _connect(self, request: httpx.Request, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        secure = scheme == "https"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    host,
                    port,
                    ssl=self._tls() if secure else None,
                    server_hostname=host if secure else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}", request=request) from None
        return protocol


class _StaleConnection(Exception):
    """A kept-alive connection was found closed before any byte of the response arrived."""


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses its response, hands the body out as it arrives."""

    # Slots: one of these lives as long as each open stream.
    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_error",
        "_framed",
        "_head_done",
        "_headers",
        "_keep_alive",
        "_parser",
        "_pool",
        "_reading_paused",
        "_reason",
        "_received_any",
        "_request",
        "_status",
        "_transport",
        "_waiter",
        "_write_paused",
        "closed",
        "idle_since",
        "origin",
    )

    def __init__(self, pool: LeanTransport, origin: Origin) -> None:
        self.origin = origin
        self.closed = False
        self.idle_since = 0.0
        self._pool = pool
        self._request: httpx.Request | None = None
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._reading_paused = False
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._framed = False  # the body's end is marked (length or chunked), not the connection's close
        self._chunks: list[bytes] = []  # taken all at once: a list is a tenth of an empty deque's size
        self._buffered = 0
        self._complete = False
        self._keep_alive = False
        self._error: httpx.HTTPError | None = None
        self._received_any = False  # any byte of the response to the current request

    # The exchange, as the transport drives it.

    async def exchange(
        self, request: httpx.Request, write_timeout: float | None, read_timeout: float | None
    ) -> httpx.Response:
        self._request = request
        try:
            await self._send_request(request, write_timeout)
            while not self._head_done:
                await self._wait(read_timeout, "no response headers")
        except BaseException:
            self.close()
            raise
        if request.method == "HEAD" or self._status in _BODILESS:
            self._complete = True
        return httpx.Response(
            self._status,
            headers=self._headers,
            stream=_ResponseBody(self, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self._reason},
        )

    async def _send_request(self, request: httpx.Request, timeout: float | None) -> None:
        transport = self._transport
        assert transport is not None
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
        chunked = False
        for name, value in request.headers.raw:
            head.append(b"%s: %s\r\n" % (name, value))
            if name.lower() == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        head.append(b"\r\n")
        pending = b"".join(head)
        stream = cast(AsyncIterator[bytes], request.stream)
        async for part in stream:
            if not part:
                continue
            pending += b"%x\r\n%s\r\n" % (len(part), part) if chunked else part
            await self._write(pending, timeout)
            pending = b""
        await self._write(pending + (b"0\r\n\r\n" if chunked else b""), timeout)

    async def _write(self, data: bytes, timeout: float | None) -> None:
        if self.closed:
            if self._received_any:
                return  # the server answered (and closed) before the body was complete: read that answer
            raise _StaleConnection
        assert self._transport is not None
        if data:
            self._transport.write(data)
        while self._write_paused and not self.closed:
            await self._wait(timeout, "request body not accepted", write=True)

    # Reading the response body, as `_ResponseBody` drives it.

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        while not self._chunks:
            if self._complete:
                return None
            await self._wait(timeout, "no response data")
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._buffered = 0
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    def release(self) -> None:
        """The response is done with: keep the connection for the next request, or close it."""
        if self._complete and self._keep_alive and not self.closed and not self._chunks:
            self._reset()
            self._pool.checkin(self)
        else:
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True

    async def _wait(self, timeout: float | None, what: str, *, write: bool = False) -> None:
        if self._error is not None:
            raise self._error
        if self.closed and not write:
            raise self._closed_error()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            kind = httpx.WriteTimeout if write else httpx.ReadTimeout
            raise kind(f"{what} within {timeout:g} s", request=self._request) from None
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _closed_error(self) -> Exception:
        if not self._received_any:
            return _StaleConnection()
        return httpx.RemoteProtocolError("the server closed the connection mid-response", request=self._request)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._error = httpx.RemoteProtocolError(f"invalid response from the server: {exc}", request=self._request)
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head_done and not self._framed and not self._complete:
            self._complete = True  # a body delimited by the connection's close has ended
            self._keep_alive = False
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._headers, self._reason, self._framed = [], b"", False  # interim response: wait for the final one
            return
        self._status = status
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_WATER and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._head_done:
            self._complete = True
            self._keep_alive = self._parser.should_keep_alive()


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self._connection = connection
        self._read_timeout = read_timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._connection.next_chunk(self._read_timeout)) is not None:
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._connection.release()


def _origin(url: httpx.URL) -> Origin:
    scheme = url.scheme
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]
