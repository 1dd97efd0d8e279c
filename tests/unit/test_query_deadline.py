"""A query's deadline holds even when the driver takes its time to cancel it; queries left behind are bounded."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from portkey_user_proxy.attribution.query_deadline import QueryDeadline


class SlowToCancel:
    """A driver call that never answers and, once cancelled, keeps going until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def query(self) -> str:
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()  # cleaning up inside the driver, say closing a frozen connection
            raise
        return "answer"


def test_the_waiter_gets_timeout_at_the_deadline_while_the_query_is_still_cancelling() -> None:
    async def scenario() -> None:
        driver = SlowToCancel()
        deadline = QueryDeadline()

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(deadline.run(driver.query(), 0.05), 5)
        elapsed = time.monotonic() - started

        assert elapsed < 1.0  # the deadline, not the driver's cleanup
        assert deadline.abandoned == 1
        driver.release.set()
        await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()})
        assert deadline.abandoned == 0

    asyncio.run(scenario())


def test_while_too_many_queries_are_still_cancelling_new_ones_fail_at_once() -> None:
    async def scenario() -> None:
        driver = SlowToCancel()
        deadline = QueryDeadline(most_abandoned=2)
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await deadline.run(driver.query(), 0.01)

        with pytest.raises(TimeoutError, match=r"^too many abandoned queries have not ended$"):
            await deadline.run(driver.query(), 5)

        assert driver.started == 2  # the third never reached the driver
        driver.release.set()
        await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()})
        assert await deadline.run(asyncio.sleep(0, "answer"), 1) == "answer"  # room again

    asyncio.run(scenario())


def test_answers_and_errors_pass_through() -> None:
    async def failing() -> None:
        raise ValueError("bad document")

    async def scenario() -> None:
        deadline = QueryDeadline()
        assert await deadline.run(asyncio.sleep(0, "answer"), 1) == "answer"
        with pytest.raises(ValueError, match="bad document"):
            await deadline.run(failing(), 1)

    asyncio.run(scenario())


def test_a_query_that_fails_as_it_is_cancelled_is_no_error_for_anyone() -> None:
    # The driver may raise its own error while a query given up on is cancelled: nobody waits for it any more.
    errors: list[str] = []

    async def query() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ConnectionResetError("closed while cancelling") from None

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context["message"]))
        deadline = QueryDeadline()
        with pytest.raises(TimeoutError):
            await deadline.run(query(), 0.01)
        while deadline.abandoned:
            await asyncio.sleep(0)
        gc.collect()  # a task whose failure nobody retrieved says so as it is collected

    asyncio.run(scenario())

    assert errors == []
