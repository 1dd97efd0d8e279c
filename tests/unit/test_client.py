"""The client's side of a response: the write timeout (one timer per response, yet each send still gets
the whole timeout), and a departure noticed."""

from __future__ import annotations

import asyncio

import pytest

from portkey_user_proxy.asgi import Message
from portkey_user_proxy.inbound.client import CancelOnDisconnect, ClientStalled, TimedSend
from portkey_user_proxy.inbound.server import Departure

BODY: Message = {"type": "http.response.body", "body": b"x", "more_body": True}


class Client:
    """An ASGI `send` whose calls return at once, after `delay` seconds, or never."""

    def __init__(self) -> None:
        self.delay: float | None = 0.0
        self.sent = 0
        self.sending = asyncio.Event()

    async def send(self, _: Message) -> None:
        self.sending.set()
        if self.delay is None:
            await asyncio.Event().wait()  # a client that reads nothing: the send never completes
        elif self.delay:
            await asyncio.sleep(self.delay)
        self.sent += 1


def test_a_send_that_waits_the_whole_timeout_ends_the_response() -> None:
    async def scenario() -> None:
        client = Client()
        timed = TimedSend(client.send, 0.05)
        await timed({"type": "http.response.start", "status": 200, "headers": []})
        client.delay = None
        with pytest.raises(ClientStalled):
            await timed(BODY)
        timed.close()
        assert timed.started

    asyncio.run(scenario())


def test_a_slow_send_late_in_a_long_response_has_its_own_whole_timeout() -> None:
    async def scenario() -> None:
        client = Client()
        timed = TimedSend(client.send, 1.0)
        await timed(BODY)
        await asyncio.sleep(0.8)  # the upstream is slow: no send in progress, nothing to time out
        client.delay = 0.5  # this send ends 1.3 s after the first began, 0.5 s after it began itself
        await timed(BODY)
        timed.close()
        assert client.sent == 2

    asyncio.run(scenario())


def test_quick_sends_never_stall_however_long_the_response() -> None:
    async def scenario() -> None:
        client = Client()
        timed = TimedSend(client.send, 0.05)
        for _ in range(10):
            await timed(BODY)
            await asyncio.sleep(0.02)
        timed.close()
        assert client.sent == 10

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        client = Client()
        client.delay = None

        async def respond() -> None:
            timed = TimedSend(client.send, 60)
            try:
                await timed(BODY)
            finally:
                timed.close()

        task = asyncio.create_task(respond())
        await client.sending.wait()
        task.cancel()  # a disconnect watcher, or the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


# --- departures ---


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


async def _never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("the server's departure signal is used, not the ASGI channel")


def test_a_departure_the_server_saw_before_the_block_stops_the_request_at_the_checkpoint() -> None:
    async def request() -> tuple[bool, bool]:
        departure = Departure()
        departure.depart()
        forwarded = False
        async with CancelOnDisconnect(_never, None, departure) as watch:
            await watch.checkpoint()
            forwarded = True
        return watch.disconnected, forwarded

    assert asyncio.run(request()) == (True, False)


def test_a_departure_during_the_block_cancels_it_and_none_after_it_does() -> None:
    async def request() -> tuple[bool, bool]:
        departure = Departure()
        async with CancelOnDisconnect(_never, None, departure) as watch:
            asyncio.get_running_loop().call_soon(departure.depart)
            await asyncio.Event().wait()  # the lookup, say: cancelled when the client leaves
        later = Departure()
        async with CancelOnDisconnect(_never, None, later) as after:
            pass
        later.depart()  # the response was over: nothing left to cancel
        await asyncio.sleep(0)
        return watch.disconnected, after.disconnected

    assert asyncio.run(request()) == (True, False)


def test_a_departure_while_the_body_still_streams_is_left_to_the_body_reader() -> None:
    async def request() -> bool:
        departure, body_received = Departure(), asyncio.Event()
        async with CancelOnDisconnect(_never, body_received, departure) as watch:
            departure.depart()
            await watch.checkpoint()
        return watch.disconnected

    assert asyncio.run(request()) is False
