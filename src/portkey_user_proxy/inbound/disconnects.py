"""Stop work for a client that has gone away.

uvicorn does not fail `send` after a disconnect, so without a watcher a proxied generation would
keep streaming, and billing, until the model finishes. The watcher reads the ASGI channel once the
request body is in and cancels the forwarding task on `http.disconnect`, the way `asyncio.timeout`
cancels: the cancellation is turned back into a normal exit at the block's end.

A request read whole is watched from then on, while its user is looked up too, and `checkpoint()`
just before it goes upstream gives the watcher its turn: a disconnect the server has seen by then
stops the request there. Without it, a request whose lookup ends in the same loop turn as its
client leaves would be written to a ready pooled connection before the watcher ever ran.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..asgi import Receive


class CancelOnDisconnect:
    def __init__(self, receive: Receive, body_received: asyncio.Event | None = None) -> None:
        self._receive = receive
        self._body_received = body_received
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    async def __aenter__(self) -> CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._watcher is not None and self._task is not None
        self._watcher.cancel()
        if self.disconnected and exc_type is asyncio.CancelledError:
            # Our own cancellation: swallow it unless someone else cancelled the task too.
            return self._task.uncancel() == 0
        return False

    async def checkpoint(self) -> None:
        """Return only if no disconnect has been seen; otherwise the task is cancelled here."""
        # One turn of the loop: the watcher's wake-up, queued when the server saw the disconnect,
        # runs before this task resumes.
        await asyncio.sleep(0)

    async def _watch(self) -> None:
        if self._body_received is not None:
            await self._body_received.wait()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                assert self._task is not None
                self._task.cancel()
                return
