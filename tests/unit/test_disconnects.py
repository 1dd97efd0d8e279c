"""The disconnect watcher: a client that has gone is never forwarded, and its request stops."""

from __future__ import annotations

import asyncio

from portkey_user_proxy.asgi import Message
from portkey_user_proxy.inbound.disconnects import CancelOnDisconnect


async def _gone() -> Message:
    return {"type": "http.disconnect"}


def test_a_disconnect_already_seen_stops_the_request_at_the_checkpoint() -> None:
    async def request() -> tuple[bool, bool]:
        forwarded = False
        async with CancelOnDisconnect(_gone) as watch:
            # Nothing before here waited: the watcher has had no turn yet.
            await watch.checkpoint()
            forwarded = True
        return watch.disconnected, forwarded

    assert asyncio.run(request()) == (True, False)


def test_a_request_cancelled_from_elsewhere_stays_cancelled() -> None:
    async def request() -> None:
        async with CancelOnDisconnect(_gone) as watch:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # a server shutdown, say, as the client leaves
            await watch.checkpoint()

    async def main() -> bool:
        task = asyncio.create_task(request())
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
