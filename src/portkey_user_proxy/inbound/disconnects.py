"""Stop work for a client that has gone away.

uvicorn does not fail `send` after a disconnect, so without a watcher a proxied generation would
keep streaming, and billing, until the model finishes. The watcher reads the ASGI channel once the
request body is in and cancels the forwarding task on `http.disconnect`, the way `asyncio.timeout`
cancels: the cancellation is turned back into a normal exit at the block's end.
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
