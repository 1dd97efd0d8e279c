"""The spend store on a server that takes writes: the stand-in, or TEST_MONGO_URI's MongoDB."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from portkey_user_proxy.budgets import Budgets, Demand, Period, Scope, window_at
from portkey_user_proxy.budgets.money import SATURATED_NANOS
from portkey_user_proxy.budgets.store import RETENTION, PendingIncrements, SpendKey
from portkey_user_proxy.dialects.usage import Usage
from tests.support.budget_replicas import replica, spent_elsewhere, stored_spend
from tests.support.mongomock_server import WritableMongo

pytestmark = pytest.mark.real_mongo
DECEMBER = window_at(Period.MONTH, datetime(2026, 12, 4, tzinfo=UTC))


def test_increments_add_up_in_one_document_per_period_scope_and_name(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            store = one.budgets.store
            await store.prepare()
            finance = SpendKey(DECEMBER, Scope.TEAM, "Finance")
            alice = SpendKey(DECEMBER, Scope.USER, "alice@example.com")
            assert await store.write(store.batch({finance: 5, alice: 7})) == {}
            assert await store.write(store.batch({finance: 3_000_000_000})) == {}
            assert await store.spend_of([finance, alice, SpendKey(DECEMBER, Scope.USER, "bob")]) == {
                finance: 3_000_000_005,
                alice: 7,
                SpendKey(DECEMBER, Scope.USER, "bob"): 0,
            }
            assert await store.top(DECEMBER, Scope.TEAM, 10) == [("Finance", 3_000_000_005)]

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {
        ("month:2026-12-01", "team", "Finance"): 3_000_000_005,
        ("month:2026-12-01", "user", "alice@example.com"): 7,
    }
    with writable_mongo.client() as client:
        documents = list(client[writable_mongo.database]["spend"].find())
        indexes = client[writable_mongo.database]["spend"].index_information()
    assert all(isinstance(document["spend"], int) for document in documents)  # whole nanodollars, never a float
    expires = {document["expires_at"].replace(tzinfo=UTC) for document in documents}
    assert expires == {DECEMBER.end + RETENTION}
    assert indexes["period_scope_name"]["unique"] is True
    assert indexes["expires_at"]["expireAfterSeconds"] == 0


def test_two_replicas_incrementing_at_once_lose_nothing(writable_mongo: WritableMongo) -> None:
    """Two processes' worth of clients, each with its own connections, writing the same keys."""
    costs: list[int] = []

    async def serve(budgets: Budgets, answers: int, seed: int) -> None:
        chance = random.Random(seed)
        for _ in range(answers):
            usage = Usage(prompt=chance.randrange(1, 50_000), completion=chance.randrange(0, 5_000))
            hold = await budgets.admit("alice@example.com", "Finance", Demand("gpt-4o", 10, 0))
            costs.append(budgets.settle(hold, "gpt-4o", usage).nanos)
            if chance.random() < 0.3:
                assert await budgets.flush()
        assert await budgets.flush()

    async def scenario() -> None:
        async with replica(writable_mongo) as one, replica(writable_mongo) as two:
            await one.budgets.start()
            await two.budgets.start()
            await asyncio.gather(serve(one.budgets, 200, 1), serve(two.budgets, 200, 2))
            await one.budgets.aclose()
            await two.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {
        ("month:2026-12-01", "team", "Finance"): sum(costs),
        ("month:2026-12-01", "user", "alice@example.com"): sum(costs),
    }


def test_the_queue_merges_increments_by_key_and_counts_what_does_not_fit() -> None:
    pending = PendingIncrements(max_keys=2)
    finance, alice, bob = (
        SpendKey(DECEMBER, Scope.TEAM, "Finance"),
        *(SpendKey(DECEMBER, Scope.USER, name) for name in ("alice", "bob")),
    )

    assert pending.add(finance, 1) and pending.add(finance, 2) and pending.add(alice, 3)
    assert not pending.add(bob, 4)  # a third key: dropped, counted
    taken = pending.take()
    assert taken == {finance: 3, alice: 3}
    assert len(pending) == 0 and pending.dropped == 1

    pending.add(bob, 5)
    assert pending.restore(taken) == 1  # Finance merges back; alice no longer fits
    assert pending.take() == {bob: 5, finance: 3}
    assert pending.dropped == 2


def test_a_batch_sent_again_counts_once_and_the_next_batch_counts(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            store = one.budgets.store
            await store.prepare()
            alice = SpendKey(DECEMBER, Scope.USER, "alice@example.com")
            first = store.batch({alice: 5})
            for _ in range(3):  # a timeout, a failover: the same batch, sent again
                assert await store.write(first) == {}
            assert await store.write(store.batch({alice: 7})) == {}
            assert await store.write(first) == {}  # a late copy of an older batch changes nothing

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {("month:2026-12-01", "user", "alice@example.com"): 12}


def test_a_write_applied_and_answered_after_the_timeout_is_not_counted_twice(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("answers late at will: stand-in only")
    spent_elsewhere(writable_mongo, "user", "alice@example.com", 1)
    one_dollar = Usage(prompt=1_000_000)

    async def scenario() -> None:
        async with replica(writable_mongo, store_timeout=0.3) as one:
            await one.budgets.start()
            stand_in.answer_late = frozenset({"update"})
            for _ in range(3):
                hold = await one.budgets.admit("alice@example.com", None, Demand("gpt-4o", 10, 0))
                one.budgets.settle(hold, "gpt-4o", one_dollar)
            assert not await one.budgets.flush()  # applied, not confirmed in time: in doubt
            stand_in.answer_late_now()
            stand_in.answer_late = frozenset()
            assert await one.budgets.flush()  # sent again: applied already
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {("month:2026-12-01", "user", "alice@example.com"): 4 * 10**9}


def test_the_queue_saturates_below_what_mongodb_can_store_and_the_store_clamps_what_it_writes(
    writable_mongo: WritableMongo,
) -> None:
    key = SpendKey(DECEMBER, Scope.USER, "alice@example.com")
    pending = PendingIncrements()
    pending.add(key, SATURATED_NANOS)
    pending.add(key, SATURATED_NANOS)
    assert pending.take() == {key: SATURATED_NANOS}

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.store.prepare()
            assert await one.budgets.store.write(one.budgets.store.batch({key: 2**64})) == {}

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {("month:2026-12-01", "user", "alice@example.com"): SATURATED_NANOS}


@pytest.mark.usefixtures("host_in_tokyo")  # its times are UTC's whatever the host's zone
def test_doctors_probe_leaves_one_document_no_budget_reads_and_that_expires_within_the_hour(
    writable_mongo: WritableMongo,
) -> None:
    before = datetime.now(UTC)

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.store.probe()
            await one.budgets.store.probe()  # once more: the same document, checked again
            report = await one.budgets.report()
            assert [(standing.name, standing.spent_nanos) for standing in report.teams] == [("Finance", 0)]
            assert report.users == []

    asyncio.run(scenario())

    with writable_mongo.client() as client:
        (document,) = client[writable_mongo.database]["spend"].find({}, {"_id": 0})
    assert set(document) == {"period", "scope", "name", "checked_at", "expires_at"}
    assert (document["period"], document["scope"], document["name"]) == ("doctor", "probe", "doctor")
    checked = document["checked_at"].replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= checked <= datetime.now(UTC)
    assert document["expires_at"].replace(tzinfo=UTC) - checked == timedelta(hours=1)


def test_doctors_probe_gives_up_after_the_store_timeout(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("answers late at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo, store_timeout=0.3) as one:
            stand_in.answer_late = frozenset({"update"})
            try:
                with pytest.raises(TimeoutError):
                    await one.budgets.store.probe()
            finally:
                stand_in.answer_late_now()

    asyncio.run(scenario())
