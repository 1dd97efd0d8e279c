"""Budgets that hold: strict from a replica's first request, requests in flight counted, deny meaning deny."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest

from portkey_user_proxy.answers import answer_for
from portkey_user_proxy.budgets import (
    BudgetConfig,
    BudgetExceeded,
    Budgets,
    BudgetStoreUnavailable,
    Demand,
    Hold,
    Price,
    StoreFailurePolicy,
)
from portkey_user_proxy.dialects.usage import Usage
from tests.support.budget_replicas import CACHE_SECONDS, CONFIG, Replica, replica, spent_elsewhere, stored_spend
from tests.support.mongomock_server import Fault, WritableMongo

# One dollar at the test prices ($1 per 1M input tokens, $2 per 1M output tokens): what each answer costs.
ONE_DOLLAR = Usage(prompt=800_000, completion=100_000, total=900_000)
# A request that says how long its answer may be: priced before it is sent at one dollar.
CAPPED = Demand("gpt-4o", 800_000, 100_000)
DECEMBER = "month:2026-12-01"
ALICE = "alice@example.com"  # $200 a month (CONFIG)


async def admit_all(budgets: Budgets, requests: int, demand: Demand = CAPPED, user: str = ALICE) -> list[Hold]:
    """`requests` admissions at once, as a burst of requests arrives; the holds of those admitted."""
    outcomes = await asyncio.gather(
        *(budgets.admit(user, None, demand) for _ in range(requests)), return_exceptions=True
    )
    for outcome in outcomes:
        assert isinstance(outcome, Hold | BudgetExceeded), outcome
    return [outcome for outcome in outcomes if isinstance(outcome, Hold)]


def finish(budgets: Budgets, holds: list[Hold], usage: Usage = ONE_DOLLAR) -> None:
    for hold in holds:
        budgets.settle(hold, "gpt-4o", usage)


def spent(one: Replica, user: str = ALICE) -> float | None:
    return one.metric("portkey_user_proxy_user_budget_spend_usd", user=user)


@pytest.mark.real_mongo
def test_a_fresh_replica_refuses_a_user_over_budget_from_the_first_request(writable_mongo: WritableMongo) -> None:
    spent_elsewhere(writable_mongo, "user", ALICE, 250)  # over her $200, by other replicas

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            assert not one.budgets.ready  # /readyz answers 503 until the period's spend is read
            await one.budgets.start()
            assert one.budgets.ready
            with pytest.raises(BudgetExceeded) as refused:
                await one.budgets.admit(ALICE, None, CAPPED)
            answer = answer_for(refused.value)
            assert answer is not None and answer.status == 412
            assert answer.message.startswith("you have used your budget of $200 for December")
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_first_requests_at_once_of_a_user_not_read_at_start_wait_for_one_read_and_are_all_refused(
    writable_mongo: WritableMongo,
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()  # alice had spent nothing yet
            spent_elsewhere(writable_mongo, "user", ALICE, 250)  # since then, through other replicas
            finds_before = _finds(writable_mongo)

            assert await admit_all(one.budgets, 20) == []

            if writable_mongo.stand_in is not None:  # the commands it ran can be counted
                assert _finds(writable_mongo) - finds_before == 1  # one read, shared by the twenty
            await one.budgets.aclose()

    asyncio.run(scenario())


def _finds(mongo: WritableMongo) -> int:
    return mongo.stand_in.commands.count("find") if mongo.stand_in is not None else 0


@pytest.mark.real_mongo
def test_forty_requests_at_once_with_ten_dollars_left_spend_about_the_ten(writable_mongo: WritableMongo) -> None:
    spent_elsewhere(writable_mongo, "user", ALICE, 190)

    async def scenario() -> None:
        async with replica(writable_mongo, per_user=True) as one:
            await one.budgets.start()
            holds = await admit_all(one.budgets, 40)
            finish(one.budgets, holds)
            assert len(holds) == 10
            assert spent(one) == 200  # within one request ($1) of the budget
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_without_a_cap_recent_answers_of_the_model_say_what_a_request_holds(writable_mongo: WritableMongo) -> None:
    spent_elsewhere(writable_mongo, "user", ALICE, 190)
    uncapped = Demand("gpt-4o", 800_000, None)

    async def scenario() -> None:
        async with replica(writable_mongo, per_user=True) as one:
            await one.budgets.start()
            # Answers of the model to someone without a budget: this replica learns they cost $1.
            for _ in range(3):
                one.budgets.settle(await one.budgets.admit("bob@example.com", None, uncapped), "gpt-4o", ONE_DOLLAR)
            holds = await admit_all(one.budgets, 40, uncapped)
            finish(one.budgets, holds)
            assert len(holds) == 10
            assert spent(one) == 200
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_request_refused_for_the_requests_still_running_is_told_so(writable_mongo: WritableMongo) -> None:
    spent_elsewhere(writable_mongo, "user", ALICE, 199)

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            running = await one.budgets.admit(ALICE, None, CAPPED)  # $1 held of the $1 left
            with pytest.raises(BudgetExceeded) as refused:
                await one.budgets.admit(ALICE, None, CAPPED)
            assert str(refused.value) == (
                "your requests still running may use the rest of your budget of $200 for December; it resets on "
                "1 January 00:00 UTC; try again when they have finished"
            )
            one.budgets.release(running)  # never sent: what it held is left again
            one.budgets.release(running)  # a second release does nothing
            one.budgets.release(await one.budgets.admit(ALICE, None, CAPPED))
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_team_whose_requests_still_running_may_use_its_budget_is_told_so(writable_mongo: WritableMongo) -> None:
    spent_elsewhere(writable_mongo, "team", "Finance", 499)

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            running = await one.budgets.admit("bob@example.com", "Finance", CAPPED)  # $1 held of the $1 left
            with pytest.raises(BudgetExceeded) as refused:
                await one.budgets.admit("carol@example.com", "Finance", CAPPED)
            assert str(refused.value) == (
                "the Finance team's requests still running may use the rest of its budget of $500 for December; "
                "it resets on 1 January 00:00 UTC; try again when they have finished"
            )
            one.budgets.release(running)
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_hold_is_charged_once_however_often_it_is_settled(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            hold = await one.budgets.admit(ALICE, "Finance", CAPPED)
            assert one.budgets.settle(hold, "gpt-4o", ONE_DOLLAR, estimated="client_left").nanos == 10**9
            assert one.budgets.settle(hold, "gpt-4o", ONE_DOLLAR).nanos == 0
            one.budgets.release(hold)
            assert one.metric("portkey_user_proxy_budget_estimated_charges_total", reason="client_left") == 1
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {(DECEMBER, "team", "Finance"): 10**9, (DECEMBER, "user", ALICE): 10**9}


@pytest.mark.real_mongo
def test_two_replicas_each_overshoot_by_at_most_about_one_request_once_they_read_each_others_spend(
    writable_mongo: WritableMongo,
) -> None:
    spent_elsewhere(writable_mongo, "user", ALICE, 190)

    async def scenario() -> None:
        async with replica(writable_mongo) as one, replica(writable_mongo) as two:
            await one.budgets.start()
            await two.budgets.start()
            # A burst on each replica in turn: the second decides on a figure read after the first's answers.
            for current, other in ((one, two), (two, one), (one, two)):
                finish(current.budgets, await admit_all(current.budgets, 20))
                assert await current.budgets.flush()
                other.ticks.seconds += CACHE_SECONDS
            await one.budgets.aclose()
            await two.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo)[(DECEMBER, "user", ALICE)] <= (200 + 2) * 10**9


@pytest.mark.real_mongo
def test_replicas_deciding_at_once_near_the_end_spend_about_what_was_left(writable_mongo: WritableMongo) -> None:
    """Near a budget's end each replica writes its holds where the other sees them (`shared_holds.py`): two
    bursts at once on two replicas that both read $10 left spend about the $10, not $10 each."""
    spent_elsewhere(writable_mongo, "user", ALICE, 190)

    async def scenario() -> None:
        async with replica(writable_mongo) as one, replica(writable_mongo) as two:
            await one.budgets.start()
            await two.budgets.start()
            bursts = await asyncio.gather(admit_all(one.budgets, 20), admit_all(two.budgets, 20))
            assert 9 <= sum(len(holds) for holds in bursts) <= 11  # within about a request of the $10 left
            for current, holds in zip((one, two), bursts, strict=True):
                finish(current.budgets, holds)
            await one.budgets.aclose()
            await two.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo)[(DECEMBER, "user", ALICE)] <= (200 + 1) * 10**9
    if writable_mongo.stand_in is not None:  # every hold taken back once its answer was charged
        with writable_mongo.client() as client:
            assert client[writable_mongo.database]["holds"].count_documents({}) == 0


@pytest.mark.parametrize("policy", list(StoreFailurePolicy))
def test_a_user_never_read_while_the_store_fails_is_refused_under_deny_and_counted_under_allow(
    writable_mongo: WritableMongo, policy: StoreFailurePolicy
) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo, on_store_failure=policy) as one:
            await one.budgets.start()
            stand_in.fault = Fault.HANG_UP
            for _ in range(2):  # the first waits for its read, which fails; the second knows the store is down
                if policy is StoreFailurePolicy.DENY:
                    with pytest.raises(BudgetStoreUnavailable) as refused:
                        await one.budgets.admit(ALICE, None, CAPPED)
                    answer = answer_for(refused.value)
                    assert answer is not None
                    assert (answer.status, answer.code) == (503, "budget_store_unavailable")
                    assert answer.headers == ((b"retry-after", b"5"),)
                else:
                    one.budgets.release(await one.budgets.admit(ALICE, None, CAPPED))
            unchecked = one.metric("portkey_user_proxy_budget_unchecked_total", reason="spend_unread")
            assert unchecked == (2 if policy is StoreFailurePolicy.ALLOW else 0)
            # Nobody with a budget: nothing to read, forwarded either way.
            one.budgets.release(await one.budgets.admit("bob@example.com", "Engineering", CAPPED))
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", list(StoreFailurePolicy))
def test_a_request_whose_user_cannot_be_told_is_refused_under_deny_when_budgets_exist(
    writable_mongo: WritableMongo, policy: StoreFailurePolicy
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo, on_store_failure=policy) as one:
            refusal = one.budgets.refuse_unknown()
            if policy is StoreFailurePolicy.DENY:
                answer = answer_for(refusal) if refusal is not None else None
                assert answer is not None and answer.status == 503
                assert answer.message == (
                    "the proxy cannot tell whose budget this request counts against (MongoDB does not answer) and "
                    "BUDGET_STORE_FAILURE is deny; try again shortly"
                )
            else:
                assert refusal is None
                assert one.metric("portkey_user_proxy_budget_unchecked_total", reason="user_unknown") == 1
        async with replica(writable_mongo, BudgetConfig(prices=CONFIG.prices), on_store_failure=policy) as none:
            assert not none.budgets.could_have_budget()
            assert none.budgets.refuse_unknown() is None  # no budget anywhere: nothing to refuse

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_period_with_more_documents_than_the_start_reads_is_read_key_by_key(
    writable_mongo: WritableMongo, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("carol@example.com", "dave@example.com", ALICE):
        spent_elsewhere(writable_mongo, "user", name, 250)

    async def scenario() -> None:
        async with replica(writable_mongo, period_read_limit=2) as one:
            with caplog.at_level(logging.INFO, "portkey_user_proxy"):
                await one.budgets.start()
            assert one.budgets.ready  # the teams' spend read
            with pytest.raises(BudgetExceeded):
                await one.budgets.admit(ALICE, None, CAPPED)
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert any("more than 2 spend documents" in record.getMessage() for record in caplog.records)


@pytest.mark.real_mongo
def test_absurd_usage_is_not_charged_and_never_stops_the_spend_being_written(
    writable_mongo: WritableMongo, caplog: pytest.LogCaptureFixture
) -> None:
    config = BudgetConfig(
        prices=(Price("gpt-4o", Decimal(1), Decimal(2)), Price("opus-*", Decimal(1000), Decimal(5000))),
        teams=CONFIG.teams,
        users=CONFIG.users,
    )
    absurd = Usage(prompt=2**39, completion=2**39)  # the largest counts usage reading lets through

    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            await one.budgets.start()
            with caplog.at_level(logging.WARNING, "portkey_user_proxy"):
                cost = one.budgets.settle(await one.budgets.admit(ALICE, "Finance", CAPPED), "opus-4", absurd)
            assert cost.nanos == 0
            assert one.metric("portkey_user_proxy_budget_invalid_usage_total") == 1
            one.budgets.settle(await one.budgets.admit(ALICE, "Finance", CAPPED), "gpt-4o", ONE_DOLLAR)
            assert await one.budgets.flush()
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {(DECEMBER, "team", "Finance"): 10**9, (DECEMBER, "user", ALICE): 10**9}
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning == (
        "an answer of the model 'opus-4' reported usage (549755813888 prompt, 549755813888 completion tokens) "
        "costing $3,298,534,883.33, more than any one answer can ($10,000): not charged; the upstream's usage "
        "or a price in BUDGETS_FILE is wrong"
    )
