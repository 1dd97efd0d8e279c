"""The client's side of a response: writes bounded in time, and a departure noticed.

Writes. uvicorn's `send` waits, without a limit, for a client to drain its socket; meanwhile the
proxy stops reading the upstream response, so the upstream connection and the request's
`MAX_CONCURRENT_UPSTREAM_REQUESTS` slot stay taken. Each `send` gets `RESPONSE_WRITE_TIMEOUT_SECONDS`
to complete: that is no progress at all for that long, since a send returns as soon as the client
has read part of what is buffered for it. A client cut off this way gets its connection reset (the
server's abort, `server.py`): closing it politely would leave it open, holding the megabytes queued
for it and a place under `MAX_CONNECTIONS`, for as long as the client chooses not to read.

Departures. uvicorn does not fail `send` after a disconnect, so unless its departure is noticed a
proxied generation would keep streaming, and billing, until the model finishes. Once the request
body is in, the forwarding task is cancelled when the client leaves, the way `asyncio.timeout`
cancels: the cancellation is turned back into a normal exit at the block's end. Under the proxy's
own server the server says so (the `departure` of its `ClientConnection`, called where it marks the
request disconnected); under another server a watcher task reads the ASGI channel for
`http.disconnect`. A request read
whole is watched from then on, while its user is looked up too, and `checkpoint()` just before it
goes upstream gives the loop one turn: a disconnect already queued for the server by then (or for
the watcher) stops the request there. Without it, a request whose lookup ends in the same loop
turn as its client leaves would be written to a ready pooled connection first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from ..asgi import Message, Receive, Scope, Send
from .server import CLIENT_CONNECTION_EXTENSION, ClientConnection, Departure

Abort = Callable[[], None]


class ClientStalled(Exception):
    """The client read none of its response for the whole write timeout."""


def client_connection(scope: Scope) -> ClientConnection | None:
    """What the server tells of this request's client connection; None under a server other than the proxy's own."""
    connection: ClientConnection | None = scope.get("extensions", {}).get(CLIENT_CONNECTION_EXTENSION)
    return connection


class TimedSend:
    """The ASGI `send` with the write timeout on each call, noting whether the response has started
    (after that, no error response can be sent).

    One timer per response rather than one per call: a stream of thousands of chunks would otherwise
    arm and cancel a timer for each. The timer looks at the send in progress, if any, when it fires:
    one that has waited the whole timeout ends the request; otherwise it is due again one timeout
    after the current send began (or from now, between sends). `close` stops it once the response is
    over, and resets the connection if the client stalled.
    """

    __slots__ = ("_abort", "_loop", "_send", "_sending_since", "_stalled", "_timeout", "_timer", "started", "task")

    def __init__(self, send: Send, timeout: float, abort: Abort | None = None) -> None:
        self._send = send
        self._timeout = timeout
        self._abort = abort
        # Python 3.11 asks the kernel for the process id on each look-up of the running loop: one here.
        self._loop = asyncio.get_running_loop()
        self.task = asyncio.current_task(self._loop)
        self._timer: asyncio.TimerHandle | None = None
        self._sending_since: float | None = None
        self._stalled = False
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        now = self._loop.time()
        if self._timer is None and not self._stalled:
            self._timer = self._loop.call_at(now + self._timeout, self._check)
        self._sending_since = now
        try:
            await self._send(message)
        except asyncio.CancelledError:
            # Our own cancellation becomes ClientStalled, unless someone else cancelled the task too
            # (a disconnect, the server shutting down): as asyncio.timeout decides.
            if self._stalled and self.task is not None and self.task.uncancel() == 0:
                raise ClientStalled from None
            raise
        finally:
            self._sending_since = None

    def close(self) -> None:
        """The request is over: stop the timer, and reset the connection of a client cut off for stalling.

        Reset only now, once the upstream side is released: earlier, the disconnect it causes would
        end the request as a client that left rather than one that stalled.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stalled and self._abort is not None:
            self._abort()

    def _check(self) -> None:
        self._timer = None
        since = self._sending_since
        if since is None:
            self._timer = self._loop.call_at(self._loop.time() + self._timeout, self._check)
        elif self._loop.time() - since < self._timeout:
            self._timer = self._loop.call_at(since + self._timeout, self._check)
        elif self.task is not None:
            self._stalled = True
            self.task.cancel()


class CancelOnDisconnect:
    """Cancels the task in the block when its client leaves, once the request body is in."""

    def __init__(
        self,
        receive: Receive,
        body_received: asyncio.Event | None = None,
        departure: Departure | None = None,
        task: asyncio.Task[object] | None = None,
    ) -> None:
        """`task`: the task the block runs in, when the caller knows it already (else looked up on entry)."""
        self._receive = receive
        self._body_received = body_received
        self._departure = departure
        self._task: asyncio.Task[object] | None = task
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    async def __aenter__(self) -> CancelOnDisconnect:
        if self._task is None:
            self._task = asyncio.current_task()
        if self._departure is not None:
            self._departure.notify(self._departed)
        else:
            self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._task is not None
        if self._departure is not None:
            self._departure.notify(None)
        if self._watcher is not None:
            self._watcher.cancel()
        if self.disconnected and exc_type is asyncio.CancelledError:
            # Our own cancellation: swallow it unless someone else cancelled the task too.
            return self._task.uncancel() == 0
        return False

    async def checkpoint(self) -> None:
        """Return only if no disconnect has been seen; otherwise the task is cancelled here."""
        # One turn of the loop: the server's connection_lost (or the watcher's wake-up), queued
        # when the client left, runs before this task resumes.
        await asyncio.sleep(0)

    def _departed(self) -> None:
        if self._body_received is not None and not self._body_received.is_set():
            # Still streaming the body: its reader meets the disconnect (as the watcher would wait).
            return
        self.disconnected = True
        assert self._task is not None
        self._task.cancel()

    async def _watch(self) -> None:
        if self._body_received is not None:
            await self._body_received.wait()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._departed()
                return
