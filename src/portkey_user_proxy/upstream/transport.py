"""A lean, strict HTTP/1.1 transport to Portkey for httpx: asyncio protocols and llhttp (httptools).

httpx's default transport (httpcore over anyio and h11) spends most of the proxy's CPU per request:
its pool scans every pooled connection, probing each socket, when a request starts and ends, and
each request goes through several layers of streams and cancel scopes. This transport keeps what a
reverse proxy needs and nothing more: one origin per pool, idle connections on a stack, request and
response bodies streamed with flow control both ways.

Every user's requests share this pool, so it is held to httpcore's rules, and stricter:

1. A request is never sent twice. Only a pooled connection found closed (or readable) before the
   first byte is written is passed over; once a byte is written, a failure is final.
2. Only clean connections return to the pool: a byte received while idle, or after a complete
   response, closes the connection. A response is only read for the request written on it.
3. A body cut short (reset, error, or close before its length or last chunk) is an error, never
   a complete response.
4. The response head (interim heads and trailers included) is bounded; trailers never become
   headers; a 1xx that is the final answer, or a status outside 100-599, is a protocol error.
5. Every failure reaches the caller as one of httpx's exceptions, never as a parser error escaping
   into the event loop.

A connection's life is an explicit state machine (httpcore's, `_async/http11.py`):
NEW → ACTIVE → IDLE → ACTIVE ... → CLOSED, with the response's own progress HEAD → BODY → COMPLETE.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import select
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import httptools
import httpx

from ..headers import BODILESS_STATUSES

Origin = tuple[str, str, int]

# A response body paused in the kernel's buffers rather than ours once this much is waiting.
_READ_HIGH_WATER = 1 << 20
# The status lines and headers of one response (interim heads and trailers included): httpcore's bound.
MAX_RESPONSE_HEAD_BYTES = 100 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ConnectionState(enum.Enum):
    NEW = enum.auto()  # connected, no request byte written
    ACTIVE = enum.auto()  # a request is on it: its bytes may have reached the server
    IDLE = enum.auto()  # in the pool between requests: any byte that arrives now closes it
    CLOSED = enum.auto()


class ResponsePhase(enum.Enum):
    HEAD = enum.auto()  # waiting for the final status line and headers
    BODY = enum.auto()  # the head is here, the body is arriving
    COMPLETE = enum.auto()  # the body ended where its framing says


@dataclass(frozen=True, slots=True)
class WireRequest:
    """A request as the lean transport writes it: every line of its head in order, and its body.

    `prepare` frames a request the way `httpx.Request` does (Host first, then the given headers, then
    the body's Content-Length or chunked Transfer-Encoding), without the two normalised copies of
    the headers an `httpx.Request` builds; `of_httpx` takes an `httpx.Request` as it is.
    """

    method: str
    url: httpx.URL
    headers: list[tuple[bytes, bytes]]
    body: bytes | AsyncIterator[bytes]
    chunked: bool
    timeouts: Mapping[str, float | None]
    source: httpx.Request | None = None  # what failures name, when the request came as an httpx.Request

    @classmethod
    def prepare(
        cls,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        content: bytes | AsyncIterator[bytes] | None,
        timeouts: Mapping[str, float | None],
    ) -> WireRequest:
        # httpx's rules (`encode_content`, `Request._prepare`): a length for a non-empty body, chunked
        # for a streamed one unless the caller gave its length, and `Content-Length: 0` after Host for
        # a POST, PUT or PATCH that has neither.
        names = {name.lower() for name, _ in headers}
        given = names & _FRAMING
        added: list[tuple[bytes, bytes]] = []
        body: bytes | AsyncIterator[bytes]
        if isinstance(content, bytes) or content is None:
            body = content or b""
            if body and b"content-length" not in given:
                added.append((b"Content-Length", b"%d" % len(body)))
        else:
            body = content
            if not given:
                added.append((b"Transfer-Encoding", b"chunked"))
        wire = [(b"Host", url.netloc)] if b"host" not in names and url.host else []
        if not (given or added) and method in ("POST", "PUT", "PATCH"):
            wire.append((b"Content-Length", b"0"))
        wire += headers
        wire += added
        chunked = (bool(added) and added[0][0] == b"Transfer-Encoding") or (
            b"transfer-encoding" in given and _is_chunked(headers)
        )
        return cls(method, url, wire, body, chunked, timeouts)

    @classmethod
    def of_httpx(cls, request: httpx.Request) -> WireRequest:
        headers = request.headers.raw
        chunked = _is_chunked(headers)
        stream = request.stream
        body = request.content if isinstance(stream, httpx.ByteStream) else cast(AsyncIterator[bytes], stream)
        return cls(request.method, request.url, headers, body, chunked, request.extensions.get("timeout", {}), request)


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def _is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers)


class UpstreamResponse:
    """An upstream answer as a proxy relays it: its status, its headers as received, its body as it arrives.

    What `httpx.Response` would hold, without what a relay never uses (decoded and normalised
    headers, cookies, the content decoders, the elapsed timer): the lean transport answers with one
    of these, and `of_httpx` wraps any other transport's response.
    """

    __slots__ = ("_chunks", "_close", "headers", "reason", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: list[tuple[bytes, bytes]],
        chunks: Callable[[], AsyncIterator[bytes]],
        close: Callable[[], Awaitable[None]],
        reason: bytes = b"",
    ) -> None:
        self.status_code = status_code
        self.headers = headers  # as received: names in the server's case, in order, repeats kept
        self.reason = reason
        self._chunks = chunks
        self._close = close

    @classmethod
    def of_httpx(cls, response: httpx.Response) -> UpstreamResponse:
        reason = response.extensions.get("reason_phrase", b"")
        chunks = functools.partial(_whole, response.content) if response.is_stream_consumed else response.aiter_raw
        return cls(response.status_code, response.headers.raw, chunks, response.aclose, reason)

    def header(self, name: bytes) -> bytes | None:
        """The values of the header `name` (lower case), joined by ", " as httpx's `Headers.get` does; None: absent."""
        values = [value for key, value in self.headers if key.lower() == name]
        if not values:
            return None
        return values[0] if len(values) == 1 else b", ".join(values)

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, undecoded; once."""
        return self._chunks()

    async def aclose(self) -> None:
        """Done with the response: its connection goes back to the pool, or is closed."""
        await self._close()


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
        response = await self.send(WireRequest.of_httpx(request))
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_HttpxBody(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def send(self, request: WireRequest) -> UpstreamResponse:
        timeouts = request.timeouts
        origin = _origin(request.url)
        # No retry anywhere below: a connection taken from the pool was clean and open just now, and
        # once the request's first byte is written, any failure is the caller's to see.
        connection = self._checkout(origin) or await self._connect(request.source, origin, timeouts.get("connect"))
        with _mapped_failures(request.source):
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
            if now - connection.idle_since < self._keepalive_expiry and connection.reusable():
                return connection
            connection.close()
        return None

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        return self._ssl_context

    async def _connect(self, request: httpx.Request | None, origin: Origin, timeout: float | None) -> _Connection:
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
        except (OSError, ValueError) as exc:  # refused, unresolvable, TLS refused, a host IDNA cannot encode
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}", request=request) from None
        return protocol


class _mapped_failures:  # named as the function it stands for in `with` statements (httpcore: map_exceptions)
    """The one boundary: whatever the socket or the parser raises reaches the caller as httpx's own.

    A class rather than a `contextmanager` generator: it is entered for every request and every chunk.
    """

    __slots__ = ("_request",)

    def __init__(self, request: httpx.Request | None) -> None:
        self._request = request

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if isinstance(exc, httpx.HTTPError) or exc is None:
            return
        if isinstance(exc, OSError):
            raise httpx.ReadError(f"the connection to the server failed: {exc}", request=self._request) from exc
        if isinstance(exc, httptools.HttpParserError):
            message = f"invalid response from the server: {exc}"
            raise httpx.RemoteProtocolError(message, request=self._request) from exc


class _StopParsing(Exception):
    """Raised from a parser callback to stop httptools; the reason, if any, is already recorded."""


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses its response, hands the body out as it arrives."""

    # Slots: one of these lives as long as each open stream.
    __slots__ = (
        "_body_in_read",
        "_buffered",
        "_bytes_without_body",
        "_chunks",
        "_error",
        "_fd",
        "_framed",
        "_head_bytes",
        "_headers",
        "_keep_alive",
        "_loop",
        "_parser",
        "_phase",
        "_pool",
        "_reading_paused",
        "_reason",
        "_request",
        "_status",
        "_transport",
        "_waiter",
        "_write_paused",
        "idle_since",
        "origin",
        "state",
    )

    def __init__(self, pool: LeanTransport, origin: Origin) -> None:
        self.origin = origin
        self.state = ConnectionState.NEW
        self.idle_since = 0.0
        self._pool = pool
        # Kept: Python 3.11 asks the kernel for the process id on each look-up of the running loop.
        self._loop = asyncio.get_running_loop()
        self._request: httpx.Request | None = None
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[bool] | None = None
        self._write_paused = False
        self._reading_paused = False
        self._reset()

    def _reset(self) -> None:
        self._phase = ResponsePhase.HEAD
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # of status lines, headers and trailers, as parsed
        self._bytes_without_body = 0  # received in reads that carried no body byte, in a row
        self._body_in_read = False
        self._framed = False  # the body's end is marked (length or chunked), not the connection's close
        self._chunks: list[bytes] = []  # taken all at once: a list is a tenth of an empty deque's size
        self._buffered = 0
        self._keep_alive = False  # the parser reached the response's end and the server keeps the connection
        self._error: httpx.HTTPError | None = None

    # The exchange, as the transport drives it.

    async def exchange(
        self, request: WireRequest, write_timeout: float | None, read_timeout: float | None
    ) -> UpstreamResponse:
        self._request = request.source
        try:
            self._activate()
            await self._send_request(request, write_timeout)
            while self._phase is ResponsePhase.HEAD:
                await self._wait(read_timeout, "no response headers")
        except BaseException:
            self.close()
            raise
        if request.method == "HEAD" or self._status in BODILESS_STATUSES:
            # No body follows, whatever the head says; the parser does not know the method, so a
            # HEAD response's connection is not reused (_keep_alive stays False).
            self._phase = ResponsePhase.COMPLETE
        body = _ResponseBody(self, request.source, read_timeout)
        return UpstreamResponse(self._status, self._headers, body.__aiter__, body.aclose, self._reason)

    def _activate(self) -> None:
        if self.closed:  # a fresh connection on which the server spoke first, or closed at once
            raise self._error or httpx.RemoteProtocolError("the server closed the connection", request=self._request)
        self.state = ConnectionState.ACTIVE

    async def _send_request(self, request: WireRequest, timeout: float | None) -> None:
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
        head += [b"%s: %s\r\n" % header for header in request.headers]
        head.append(b"\r\n")
        body, chunked = request.body, request.chunked
        if isinstance(body, bytes):
            await self._write(b"".join(head) + body, timeout)  # one write: head and body
            return
        # A streamed body: the head goes now, each part as the caller produces it.
        await self._write(b"".join(head), timeout)
        async for part in body:
            if part:
                await self._write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part, timeout)
        if chunked:
            await self._write(b"0\r\n\r\n", timeout)

    async def _write(self, data: bytes, timeout: float | None) -> None:
        if self.state is ConnectionState.CLOSED:
            if self._phase is not ResponsePhase.HEAD:
                return  # the server answered (and closed) before the body was complete: read that answer
            raise self._error or httpx.WriteError("the server closed the connection", request=self._request)
        assert self._transport is not None
        self._transport.write(data)
        while self._write_paused and not self.closed:  # the loop may close it while we wait
            await self._wait(timeout, "request body not accepted", write=True)

    # Reading the response body, as `_ResponseBody` drives it.

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        while not self._chunks:
            if self._phase is ResponsePhase.COMPLETE:
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
        clean = self._phase is ResponsePhase.COMPLETE and self._keep_alive and not self._chunks
        if self.state is ConnectionState.ACTIVE and clean and self._error is None:
            self._reset()
            self.state = ConnectionState.IDLE
            self._pool.checkin(self)
        else:
            self.close()

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    def reusable(self) -> bool:
        """Idle and nothing waiting to be read: a byte the event loop has not delivered yet counts too."""
        return self.state is ConnectionState.IDLE and not _has_pending_bytes(self._fd)

    def close(self) -> None:
        if self._transport is not None and self.state is not ConnectionState.CLOSED:
            self._transport.close()
        self.state = ConnectionState.CLOSED

    async def _wait(self, timeout: float | None, what: str, *, write: bool = False) -> None:
        if self._error is not None:
            raise self._error
        if self.state is ConnectionState.CLOSED and not write:
            raise httpx.RemoteProtocolError("the server closed the connection", request=self._request)
        # A timer that ends the wait, rather than `asyncio.timeout` (a context, a task look-up and a
        # reschedule per wait): the waiter's result says which came first, the event or the timeout.
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
        try:
            woken = await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if not woken:
            kind = httpx.WriteTimeout if write else httpx.ReadTimeout
            raise kind(f"{what} within {timeout:g} s", request=self._request)
        if self._error is not None:
            raise self._error

    def _fail(self, error: httpx.HTTPError) -> None:
        """The exchange cannot go on: the caller sees `error`, and the connection is not used again."""
        if self._error is None:
            self._error = error
        self.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    # asyncio.Protocol: nothing raised here may reach the event loop (it would log "Fatal error").

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if self.state is not ConnectionState.ACTIVE:
            # Bytes on an idle connection belong to no request; before any request, to none either.
            self._fail(httpx.RemoteProtocolError("the server sent bytes no request asked for", request=self._request))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _StopParsing):  # a stop asked for by a callback below
                self._fail(httpx.RemoteProtocolError(f"invalid response: {exc}", request=self._request))
        except Exception as exc:  # HttpParserError, HttpParserUpgrade (a 101): whatever llhttp refuses
            self._fail(httpx.RemoteProtocolError(f"invalid response: {exc}", request=self._request))
        else:
            self._bound_unparsed_lines(len(data))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = ConnectionState.CLOSED
        if self._phase is ResponsePhase.BODY and not self._framed and exc is None:
            self._phase = ResponsePhase.COMPLETE  # a body delimited by the connection's close has ended
        elif self._phase is not ResponsePhase.COMPLETE and self._error is None:
            self._error = self._lost(exc)
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    def _lost(self, exc: Exception | None) -> httpx.HTTPError:
        where = "before its response" if self._phase is ResponsePhase.HEAD else "in the middle of the response"
        if exc is not None:
            return httpx.ReadError(f"the connection failed {where}: {exc}", request=self._request)
        return httpx.RemoteProtocolError(f"the server closed the connection {where}", request=self._request)

    def _bound_unparsed_lines(self, size: int) -> None:
        # llhttp holds a header or trailer line until it ends, and reports neither before: reads that
        # carry no body byte are status lines, headers, chunk sizes or trailers, so they are what is bounded.
        if self._body_in_read:
            self._body_in_read = False
            self._bytes_without_body = 0
        elif self._phase is not ResponsePhase.COMPLETE and self.state is ConnectionState.ACTIVE:
            self._bytes_without_body += size
            if self._bytes_without_body > MAX_RESPONSE_HEAD_BYTES:
                self._fail(_head_too_large(self._request))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._phase is ResponsePhase.COMPLETE:
            # A second response to one request: the connection's bytes no longer match its requests.
            self.close()
            raise _StopParsing

    def on_status(self, reason: bytes) -> None:
        self._count_head(len(reason) + 15)  # "HTTP/1.1 200 " and CRLF
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        if self._phase is not ResponsePhase.HEAD:
            return  # a chunked body's trailers: never headers
        self._headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101 or not 100 <= status <= 599:
            self._fail(httpx.RemoteProtocolError(f"unexpected response status {status}", request=self._request))
            raise _StopParsing
        if status < 200:
            self._headers, self._reason, self._framed = [], b"", False  # interim response: wait for the final one
            return
        self._status = status
        self._phase = ResponsePhase.BODY

    def on_body(self, body: bytes) -> None:
        self._body_in_read = True
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_WATER and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._phase is ResponsePhase.BODY:
            self._phase = ResponsePhase.COMPLETE
            self._keep_alive = self._parser.should_keep_alive()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_RESPONSE_HEAD_BYTES:
            self._fail(_head_too_large(self._request))
            raise _StopParsing


class _ResponseBody:
    """A response's body as it arrives, chunk by chunk; `aclose` hands the connection back."""

    def __init__(self, connection: _Connection, request: httpx.Request | None, read_timeout: float | None) -> None:
        self._connection = connection
        self._request = request
        self._read_timeout = read_timeout
        self._released = False

    def __aiter__(self) -> _ResponseBody:
        # An iterator of its own rather than an async generator, which the event loop registers (a weak
        # reference each) so as to close it at shutdown: one per response otherwise.
        return self

    async def __anext__(self) -> bytes:
        with _mapped_failures(self._request):
            chunk = await self._connection.next_chunk(self._read_timeout)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._connection.release()


async def _whole(content: bytes) -> AsyncIterator[bytes]:
    """The body of a response read whole already (one built from its content)."""
    if content:
        yield content


class _HttpxBody(httpx.AsyncByteStream):
    """A lean response's body as an `httpx.Response`'s stream, for callers that go through httpx."""

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _head_too_large(request: httpx.Request | None) -> httpx.RemoteProtocolError:
    message = f"the response's status line and headers exceed {MAX_RESPONSE_HEAD_BYTES} bytes"
    return httpx.RemoteProtocolError(message, request=request)


def _has_pending_bytes(fd: int) -> bool:
    """Whether the socket has something to read (bytes, or the server's close) that the loop has not seen yet."""
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _origin(url: httpx.URL) -> Origin:
    scheme = url.scheme
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]
