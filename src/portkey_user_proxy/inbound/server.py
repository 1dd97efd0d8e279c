"""How the server reads requests: bounded heads, no trailers, timeouts, and a cap on connections.

The protocol below is uvicorn's httptools one (the parser `uvicorn[standard]` brings, and the only
one the proxy runs), with six rules added:

- **Head size.** uvicorn's h11 parser bounds an incomplete request head, httptools buffers headers
  of any size. Bytes are counted while a head is incomplete: past `MAX_REQUEST_HEAD_BYTES` the
  client gets 431 and the connection is closed.
- **Trailers.** uvicorn appends a chunked body's trailers to the header list it handed the app, so
  whatever reads the headers after the body (identity, metadata, the inbound key) could see them.
  They are dropped before uvicorn sees them, as uvicorn's h11 protocol does, and bounded with the
  head: the bytes between body bytes may not pass `MAX_REQUEST_HEAD_BYTES` either.
- **Timeouts.** A new connection must deliver a complete head within `REQUEST_HEAD_TIMEOUT_SECONDS`,
  as must each later request from its first byte; a body may stop arriving for at most
  `REQUEST_BODY_TIMEOUT_SECONDS`. Time the server itself is not reading (flow control, a response
  still being sent ahead of a pipelined request, a client waiting for `100 Continue`) never counts.
  One timer handle per connection, armed for at most the shorter timeout and re-armed only when it
  fires, which checks the current phase's deadline: a read costs one clock reading, and nothing is
  cancelled or re-armed per read or per request.
- **Connections.** With `MAX_CONNECTIONS`, a connection beyond it gets 503 and is closed at once,
  before it can hold a file descriptor for long.
- **Invalid requests.** The parser's refusals get the proxy's JSON 400, after the answers still
  owed to the requests before the invalid one, and never after an answer to the invalid one itself.
- **The client's connection, told to the app.** Each request's scope holds a `ClientConnection` in
  `extensions[CLIENT_CONNECTION_EXTENSION]`: its `abort` resets the connection at once, dropping
  what is queued for the client (see `client.py`), and its `departure` calls what the app names
  when the server sees the client leave (its connection lost, given up or reset before the
  response completed): no task of the app's has to wait on `receive()` for it.

The refusals are the catalogue's rows marked `by_server` (`errors.py`). Each one sent is reported to
the app through the lifespan state (uvicorn hands every connection the state the app's lifespan
yields): `REFUSALS_STATE_KEY` names a `RefusalCounter` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .. import errors
from ..observability.logs import RateLimitedWarnings

_warnings = RateLimitedWarnings()

REFUSALS_STATE_KEY = "portkey_user_proxy.refusals"
# Called with the refused request's path (None when its head was not read whole) and the error code.
RefusalCounter = Callable[[str | None, str], None]
CLIENT_CONNECTION_EXTENSION = "portkey_user_proxy.client_connection"
# SO_LINGER on, with no time to linger: closing the socket resets the connection and frees its buffers.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class InboundLimits:
    """The server's timeouts and connection cap (seconds; 0 connections means no cap)."""

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 0


def server_options(max_head_bytes: int, limits: InboundLimits | None = None) -> dict[str, Any]:
    """uvicorn options for the proxy's protocol; picklable, so that worker processes get them too."""
    limits = limits or InboundLimits()
    return {
        "http": functools.partial(BoundedHttpToolsProtocol, limits=limits),
        "h11_max_incomplete_event_size": max_head_bytes,
        "timeout_keep_alive": limits.keep_alive_timeout,
    }


class Departure:
    """One request's client leaving, as the server sees it; `notify` names what to call then.

    The server calls `depart` where it marks the request's cycle disconnected, before the app's
    next `receive()` would return `http.disconnect`.
    """

    __slots__ = ("_callback", "departed")

    def __init__(self) -> None:
        self._callback: Callable[[], None] | None = None
        self.departed = False

    def notify(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` when the client leaves, at once if it has left; None calls nothing."""
        if self.departed:
            if callback is not None:
                callback()
        else:
            self._callback = callback

    def depart(self) -> None:
        if not self.departed:
            self.departed = True
            callback, self._callback = self._callback, None
            if callback is not None:
                callback()


class ClientConnection(TypedDict):
    """What the server tells one request about its client's connection (an ASGI extension is a dict)."""

    abort: Callable[[], None]  # resets the connection now
    departure: Departure  # tells of the client leaving


class Phase(enum.Enum):
    AWAITING_REQUEST = "awaiting a request"  # connected, or the last request was read whole
    HEAD = "reading a request head"
    BODY = "reading a request body"
    TRAILERS = "reading a chunked body's trailers"


# A tuple, not a set: membership compares identities, where a set would call Enum's __hash__ (Python code)
# for each of the request's header lines.
_IN_BODY = (Phase.BODY, Phase.TRAILERS)


@dataclass(frozen=True, slots=True)
class _Refusal:
    code: str
    response: bytes


def _refusal(answer: errors.Answer, **values: object) -> _Refusal:
    return _Refusal(answer.code, answer.raw_response(**values))


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, and uvicorn answers through send_400_response."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: InboundLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits or InboundLimits()
        self._head_limit: int = self.config.h11_max_incomplete_event_size or 65536
        self._phase = Phase.AWAITING_REQUEST
        self._head_bytes = 0  # of the request line, headers and trailers parsed so far
        self._unparsed_bytes = 0  # received while a head was incomplete, parsed or not
        self._framing_bytes = 0  # received in a body since the last read that carried body bytes
        self._body_bytes = 0  # body bytes the current read carried
        self._ended_a_request = False
        self._refused = False
        # One timer, armed for at most `_tick` and re-armed when it fires, so that no read and no
        # request ever cancels or re-arms it: each phase's deadline is checked when it fires.
        self._timer: asyncio.TimerHandle | None = None
        self._tick = min(self._limits.head_timeout, self._limits.body_timeout, self._limits.keep_alive_timeout)
        self._head_due = 0.0  # loop time by which the current head must be complete
        self._last_read = 0.0  # loop time of the last read
        self._served_a_request = False
        self._idle_since: float | None = None  # a request was read whole after its response had ended
        self._refusal_after_answers: _Refusal | None = None  # a 400 due once the requests before it are answered
        self._departure: Departure | None = None  # of the request in `self.cycle`, when it is the app's

    # --- Connections ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self._limits.max_connections
        if cap and len(self.connections) > cap:
            answer = errors.TOO_MANY_CONNECTIONS
            _warnings.warn("connections", "refused a connection over MAX_CONNECTIONS (%d) with %d", cap, answer.status)
            self._give_up(_refusal(answer, limit=cap))
            return
        self._last_read = self.loop.time()
        self._head_due = self._last_read + self._limits.head_timeout
        self._keep_timing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        self._depart_if_disconnected()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is the WebSocket protocol's from here on
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        self._ended_a_request = False
        self._body_bytes = 0
        was_in_body = self._phase in _IN_BODY
        super().data_received(data)
        if self.transport.is_closing() or self._ended_a_request:
            # A read that ended a request is not counted, though the next head may have begun in
            # it: loose by one read.
            return
        if self._phase in _IN_BODY:
            self._count_framing(len(data) - (0 if was_in_body else self._head_bytes))
        else:
            # httptools holds a header line until it ends: a head that stays incomplete is counted
            # by the bytes received, so one endless header cannot fill the memory.
            self._unparsed_bytes += len(data)
            if self._unparsed_bytes > self._head_limit:
                self._refuse_head()

    def _count_framing(self, received: int) -> None:
        # Chunk sizes and CRLFs take a few bytes per chunk; only trailers (or chunk extensions) can
        # grow without a body byte in between, and httptools buffers a trailer line until it ends.
        framing = received - self._body_bytes
        self._framing_bytes = framing if self._body_bytes else self._framing_bytes + framing
        if self._framing_bytes > self._head_limit:
            self._refuse_head()

    # --- Parser callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = Phase.HEAD
        self._head_bytes = 0
        self._idle_since = None
        if self._served_a_request:  # a later request on the connection: its head is timed from its first byte
            self._head_due = self._last_read + self._limits.head_timeout
        self._keep_timing()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        if self._phase in _IN_BODY:
            # A trailer: identity, metadata and the inbound key come from the head alone.
            self._phase = Phase.TRAILERS
            return
        HttpToolsProtocol.on_header(self, name, value)  # called for every header line: not through super()

    def on_headers_complete(self) -> None:
        self._phase = Phase.BODY
        self._unparsed_bytes = 0
        self._framing_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request for the app (not an upgrade)
            # The app's task is created, not yet run: it finds the extension in its scope.
            self._departure = Departure()
            extensions = self.scope.setdefault("extensions", {})
            extensions[CLIENT_CONNECTION_EXTENSION] = {
                "abort": functools.partial(self._abort, cycle),
                "departure": self._departure,
            }
        else:
            self._departure = None

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = Phase.AWAITING_REQUEST
        self._ended_a_request = True
        self._served_a_request = True
        if self.cycle is not None and self.cycle.response_complete:
            # Answered before its body ended (a 405, say): uvicorn armed its keep-alive timeout when
            # the answer went, and the rest of the body disarmed it. The connection is idle from now.
            self._idle_since = self._last_read
            self._keep_timing()

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse_head()
            return
        # uvicorn writes a plain-text 400 at once, ahead of the responses still owed to the requests
        # before the broken one: the client would take it for the answer to a request that went upstream.
        refusal = _refusal(errors.INVALID_HTTP_REQUEST)
        if self._earlier_answer_owed():
            self._refusal_after_answers = self._refusal_after_answers or refusal
            self.flow.pause_reading()  # the parser has failed: what follows is read by nobody
        else:
            self._give_up(refusal)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal_after_answers is not None and not self.pipeline and not self.transport.is_closing():
            self._give_up(self._refusal_after_answers)

    def _earlier_answer_owed(self) -> bool:
        """Whether a request before the broken one still awaits (part of) its response."""
        cycle = self.cycle
        if cycle is None:
            return False
        if self._phase in _IN_BODY:  # the broken request is the cycle: drop it if it waits its turn
            queued = len(self.pipeline)
            self.pipeline = type(self.pipeline)(item for item in self.pipeline if item[0] is not cycle)
            return queued > len(self.pipeline) or bool(self.pipeline)
        return bool(self.pipeline) or not cycle.response_complete

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._head_limit:
            self._refused = True
            raise _HeadTooLarge

    # --- Timeouts -----------------------------------------------------------------------------------

    def _keep_timing(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self._tick, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        due = self._due()
        if due is None or self.transport.is_closing():
            return  # a request in the app's hands, or uvicorn's keep-alive timeout runs; the next head re-arms
        now = self.loop.time()
        if not self._waiting_for_the_client():
            # The time that passed was not the client's to use: count again from now.
            self._last_read = now
            self._head_due = now + self._limits.head_timeout
        elif now >= due:
            self._time_out()
            return
        self._timer = self.loop.call_later(min(max(due - now, 0.0), self._tick), self._on_timer)

    def _due(self) -> float | None:
        """When the client's time for the current phase runs out; None when the client owes nothing."""
        if self._phase in _IN_BODY:
            return self._last_read + self._limits.body_timeout
        if self._phase is Phase.HEAD or not self._served_a_request:
            return self._head_due
        if self._idle_since is not None:
            return self._idle_since + self._limits.keep_alive_timeout
        return None

    def _waiting_for_the_client(self) -> bool:
        if self.flow.read_paused:
            return False
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return True
        if self._phase in _IN_BODY:
            return not cycle.waiting_for_100_continue
        return False  # a pipelined head while the response before it is still being sent

    def _time_out(self) -> None:
        if self._phase is Phase.AWAITING_REQUEST:
            self._give_up(None)  # connected and sent nothing: nobody to answer
        elif self._phase is Phase.HEAD:
            self._give_up(_refusal(errors.HEAD_TIMEOUT, seconds=self._limits.head_timeout))
        else:
            self._give_up(_refusal(errors.BODY_TIMEOUT, seconds=self._limits.body_timeout))

    # --- Ending a connection --------------------------------------------------------------------------

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        answer = errors.HEAD_TOO_LARGE
        _warnings.warn(
            "request-head",
            "refused a request whose line and headers exceed %d bytes (MAX_REQUEST_HEAD_BYTES) with %d",
            self._head_limit,
            answer.status,
        )
        self._give_up(_refusal(answer, limit=self._head_limit))

    def _give_up(self, refusal: _Refusal | None) -> None:
        """Close the connection, with `refusal` first unless a response has begun on it."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None:
            if cycle.response_started and (self._phase in _IN_BODY or not cycle.response_complete):
                refusal = None  # the request being read was answered already, or an answer is under way
            if not cycle.response_complete:
                # The app's request is over: it reads a disconnect, and what it sends is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
                self._depart_if_disconnected()
        if refusal is not None:
            self._report(refusal.code)
            self.transport.write(refusal.response)
        self.transport.close()

    def _abort(self, cycle: RequestResponseCycle) -> None:
        """Reset the connection now, for an app that gives up on a client reading nothing.

        `close()` would keep the connection, with everything queued for it and its place under
        MAX_CONNECTIONS, until the client reads it all.
        """
        self._disarm()
        if not cycle.response_complete:
            # The app's request is over: what it sends is dropped, and uvicorn logs no error for the cut.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle is self.cycle:
                self._depart_if_disconnected()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # gone already: nothing left to free
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()

    def _depart_if_disconnected(self) -> None:
        if self._departure is not None and self.cycle is not None and self.cycle.disconnected:
            self._departure.depart()

    def _report(self, code: str) -> None:
        counter: RefusalCounter | None = self.app_state.get(REFUSALS_STATE_KEY)
        if counter is not None:
            counter(self.scope.get("path") if self._phase in _IN_BODY else None, code)


# --- The uvicorn internals this module relies on -------------------------------------------------
# The protocol subclass above drives uvicorn's own request cycle: these are the names it uses. A
# uvicorn release that moved any of them fails `missing_uvicorn_internals` (a test asks it) before it
# can misbehave; pyproject.toml pins uvicorn to the releases this was tested with.

_OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "handle_websocket_upgrade",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "send_400_response",  # uvicorn calls it when the parser fails, a callback's exception included
)
_PROTOCOL_STATE = ("cycle", "pipeline", "flow", "connections", "transport", "loop", "config", "scope", "app_state")
# `pipeline` holds (cycle, app) pairs: a request waiting its turn is dropped by its cycle.
_PIPELINE = re.compile(r"self\.pipeline: deque\[tuple\[RequestResponseCycle,")
_FLOW_STATE = ("read_paused",)
_FLOW_CALLED = ("pause_reading",)
_CONFIG_STATE = ("h11_max_incomplete_event_size",)
_CYCLE_STATE = (
    "disconnected",
    "message_event",
    "response_complete",
    "response_started",
    "scope",
    "waiting_for_100_continue",
)


def missing_uvicorn_internals() -> list[str]:
    """The uvicorn names this module uses that the installed uvicorn no longer has; [] when all are there."""
    missing = [
        f"HttpToolsProtocol.{name}()" for name in _OVERRIDDEN if not callable(getattr(HttpToolsProtocol, name, None))
    ]
    missing += [f"HttpToolsProtocol.{name}" for name in _PROTOCOL_STATE if not _assigns(HttpToolsProtocol, name)]
    if not _PIPELINE.search(inspect.getsource(HttpToolsProtocol)):
        missing.append("HttpToolsProtocol.pipeline of (RequestResponseCycle, app) pairs")
    missing += [f"RequestResponseCycle.{name}" for name in _CYCLE_STATE if not _assigns(RequestResponseCycle, name)]
    missing += [f"FlowControl.{name}" for name in _FLOW_STATE if not _assigns(FlowControl, name)]
    missing += [f"FlowControl.{name}()" for name in _FLOW_CALLED if not callable(getattr(FlowControl, name, None))]
    missing += [f"Config.{name}" for name in _CONFIG_STATE if not _assigns(Config, name)]
    return missing


def _assigns(cls: type, attribute: str) -> bool:
    # `self.name = ...` or `self.name: T = ...` somewhere in the class's own source.
    return re.search(rf"self\.{attribute}\b[^=\n]*=", inspect.getsource(cls)) is not None
