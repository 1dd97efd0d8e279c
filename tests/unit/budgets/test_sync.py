"""The store kept in step in the background while the proxy serves: writes and reads nobody waits for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from portkey_user_proxy.budgets import Budgets, Demand
from portkey_user_proxy.dialects.usage import Usage
from tests.support.budget_replicas import replica, stored_spend
from tests.support.mongomock_server import Fault, WritableMongo

HUNDRED_DOLLARS = Usage(prompt=60_000_000, completion=20_000_000, total=80_000_000)  # at CONFIG's prices
SMALL = Demand("gpt-4o", 10, 0)
DECEMBER = "month:2026-12-01"


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Until the background has done what `condition` looks for: the test never flushes it itself."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def answered(budgets: Budgets, user: str, team: str | None) -> None:
    budgets.settle(await budgets.admit(user, team, SMALL), "gpt-4o", HUNDRED_DOLLARS)


@pytest.mark.real_mongo
def test_answers_are_written_to_the_store_while_the_proxy_runs(writable_mongo: WritableMongo) -> None:
    # Other replicas see this one's spend only once it is written: not at shutdown, within a write interval.
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            await answered(one.budgets, "bob@example.com", "Finance")
            await eventually(lambda: one.budgets.pending_increments == 0)
            assert await asyncio.to_thread(stored_spend, writable_mongo) == {
                (DECEMBER, "team", "Finance"): 100 * 10**9,
                (DECEMBER, "user", "bob@example.com"): 100 * 10**9,
            }

            await answered(one.budgets, "bob@example.com", "Finance")  # the next one, after the interval
            await eventually(lambda: one.budgets.pending_increments == 0)
            stored = await asyncio.to_thread(stored_spend, writable_mongo)
            assert stored[(DECEMBER, "team", "Finance")] == 200 * 10**9
            await one.budgets.aclose()

    asyncio.run(scenario())


def test_a_store_that_failed_at_start_is_prepared_and_read_once_it_answers(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            stand_in.fault = Fault.UNAUTHORIZED
            await one.budgets.start()
            assert not one.budgets.ready
            stand_in.commands.clear()
            stand_in.fault = Fault.NONE

            # Nothing asks: the background tries again, and the replica becomes ready (/readyz).
            await eventually(lambda: one.budgets.ready)
            assert "createIndexes" in stand_in.commands  # the unique index that makes each write count once
            await answered(one.budgets, "bob@example.com", "Finance")
            await eventually(lambda: one.budgets.pending_increments == 0)
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo)[(DECEMBER, "team", "Finance")] == 100 * 10**9
