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
    __slots__ = ("_send", "_timeout")

    def __init__(self, send: Send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout

    async def __call__(self, message: Message) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._send(message)
        except TimeoutError:
            raise ClientStalled from None
