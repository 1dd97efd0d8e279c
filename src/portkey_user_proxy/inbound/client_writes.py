"""A client that stops reading its response must not hold Portkey's side of it forever.

uvicorn's `send` waits, without a limit, for a client to drain its socket; meanwhile the proxy
stops reading the upstream response, so the upstream connection and the request's
`MAX_CONCURRENT_UPSTREAM_REQUESTS` slot stay taken. Each `send` gets `RESPONSE_WRITE_TIMEOUT_SECONDS`
to complete: that is no progress at all for that long, since a send returns as soon as the client
has read part of what is buffered for it.
"""

from __future__ import annotations

import asyncio

from ..asgi import Message, Send


class ClientStalled(Exception):
    """The client read none of its response for the whole write timeout."""


class TimedSend:
    """The ASGI `send` with the write timeout on each call, noting whether the response has started
    (after that, no error response can be sent).

    One timer per response rather than one per call: a stream of thousands of chunks would otherwise
    arm and cancel a timer for each. The timer looks at the send in progress, if any, when it fires:
    one that has waited the whole timeout ends the request; otherwise it is due again one timeout
    after the current send began (or from now, between sends). `close` stops it once the response is
    over.
    """

    __slots__ = ("_loop", "_send", "_sending_since", "_stalled", "_task", "_timeout", "_timer", "started")

    def __init__(self, send: Send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
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
            if self._stalled and self._task is not None and self._task.uncancel() == 0:
                raise ClientStalled from None
            raise
        finally:
            self._sending_since = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        since = self._sending_since
        if since is None:
            self._timer = self._loop.call_at(self._loop.time() + self._timeout, self._check)
        elif self._loop.time() - since < self._timeout:
            self._timer = self._loop.call_at(since + self._timeout, self._check)
        elif self._task is not None:
            self._stalled = True
            self._task.cancel()
