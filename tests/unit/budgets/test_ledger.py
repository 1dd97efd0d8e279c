"""`admit` before forwarding and `settle` after the answer, over the stand-in (or a real MongoDB)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from portkey_user_proxy.answers import answer_for
from portkey_user_proxy.app import reload_budgets
from portkey_user_proxy.budgets import (
    BUDGET_EXCEEDED,
    BudgetConfig,
    BudgetExceeded,
    Budgets,
    BudgetsFile,
    BudgetStoreUnavailable,
    Cost,
    Demand,
    Mode,
    Period,
    Price,
    StoreFailurePolicy,
    StoreState,
)
from portkey_user_proxy.dialects.usage import Usage
from portkey_user_proxy.errors import ProxyError
from tests.support.budget_replicas import CACHE_SECONDS, CONFIG, replica, spent_elsewhere, stored_spend
from tests.support.mongomock_server import Fault, WritableMongo

# $100 at the test prices ($1 per 1M input tokens, $2 per 1M output tokens).
HUNDRED_DOLLARS = Usage(prompt=60_000_000, completion=20_000_000, total=80_000_000)
# A request too small to hold anything that matters against these budgets.
SMALL = Demand("gpt-4o", 10, 0)
REFUSALS = "portkey_user_proxy_budget_refusals_total"


def state_of(budgets: Budgets) -> StoreState:
    # A call, not the property: the state changes across awaits, which mypy's narrowing does not know.
    return budgets.store_state


async def answered(budgets: Budgets, user: str | None, team: str | None, usage: Usage = HUNDRED_DOLLARS) -> Cost:
    """What the forwarder does for a request that is admitted and answered."""
    return budgets.settle(await budgets.admit(user, team, SMALL), "gpt-4o", usage)


async def refusal(budgets: Budgets, user: str | None, team: str | None) -> ProxyError | None:
    """The refusal `admit` answers with; None when admitted (the hold is released: never sent)."""
    try:
        hold = await budgets.admit(user, team, SMALL)
    except (BudgetExceeded, BudgetStoreUnavailable) as refused:
        return answer_for(refused)  # the client's answer, as the forwarder gives it
    budgets.release(hold)
    return None


@pytest.mark.real_mongo
def test_a_team_is_refused_once_it_has_spent_its_budget_and_not_before(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            for _ in range(4):
                await answered(one.budgets, "bob@example.com", "Finance")
            # $400 of $500: one more answer may start; it brings the team to $500.
            await answered(one.budgets, "bob@example.com", "Finance")

            refused = await refusal(one.budgets, "bob@example.com", "Finance")
            assert refused is not None
            assert (refused.status, refused.code) == (412, BUDGET_EXCEEDED)
            assert refused.message == (
                "the Finance team has used its budget of $500 for December; it resets on 1 January 00:00 UTC"
            )
            assert refused.headers == ()
            # Someone outside the team, and a team without a budget, go on.
            assert await refusal(one.budgets, "carol@example.com", "Engineering") is None
            assert await refusal(one.budgets, None, None) is None
            assert one.metric(REFUSALS, scope="team") == 1
            assert one.metric("portkey_user_proxy_team_budget_spend_usd", team="Finance") == 500
            assert one.metric("portkey_user_proxy_team_budget_limit_usd", team="Finance") == 500
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo)[("month:2026-12-01", "team", "Finance")] == 500 * 10**9


@pytest.mark.real_mongo
def test_a_user_over_their_own_budget_is_told_so_in_their_words(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            await answered(one.budgets, "Alice@Example.com", None)
            await answered(one.budgets, "alice@example.com", None)  # admitted at $100 of $200

            refused = await refusal(one.budgets, "ALICE@example.com", "Engineering")
            assert refused is not None
            assert refused.message == (
                "you have used your budget of $200 for December; it resets on 1 January 00:00 UTC"
            )
            assert await refusal(one.budgets, "bob@example.com", None) is None  # no default budget in CONFIG
            assert one.metric(REFUSALS, scope="user") == 1
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_another_replicas_spend_counts_once_this_replicas_figure_is_older_than_the_cache_window(
    writable_mongo: WritableMongo,
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one, replica(writable_mongo) as two:
            await one.budgets.start()
            await two.budgets.start()
            for _ in range(5):
                await answered(one.budgets, "bob@example.com", "Finance")
            assert await one.budgets.flush()

            # Within the cache window, the other replica still forwards: the bounded overshoot.
            assert await refusal(two.budgets, "dave@example.com", "Finance") is None
            # Past it, the figure is too old to decide on: the request waits for a read, and is refused.
            two.ticks.seconds += CACHE_SECONDS
            refused = await refusal(two.budgets, "dave@example.com", "Finance")
            assert refused is not None and refused.message.startswith("the Finance team has used its budget")
            await one.budgets.aclose()
            await two.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_new_period_starts_with_nothing_spent(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            one.clock.instant = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
            await one.budgets.start()
            for _ in range(5):
                await answered(one.budgets, "bob@example.com", "Finance")
            assert await refusal(one.budgets, "alice@example.com", "Finance") is not None

            one.clock.instant = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
            assert await refusal(one.budgets, "alice@example.com", "Finance") is None
            assert one.metric("portkey_user_proxy_team_budget_spend_usd", team="Finance") == 0
            await answered(one.budgets, "alice@example.com", "Finance")
            await one.budgets.aclose()

    asyncio.run(scenario())

    stored = stored_spend(writable_mongo)
    assert stored[("month:2026-12-01", "team", "Finance")] == 500 * 10**9
    assert stored[("month:2027-01-01", "team", "Finance")] == 100 * 10**9


@pytest.mark.real_mongo
def test_warn_mode_forwards_over_budget_and_counts_and_logs_it(
    writable_mongo: WritableMongo, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo, mode=Mode.WARN) as one:
            await one.budgets.start()
            for _ in range(5):
                await answered(one.budgets, "bob@example.com", "Finance")  # the team's $500, never over
            for _ in range(2):
                await answered(one.budgets, "alice@example.com", None)  # her $200, never over
            assert one.metric("portkey_user_proxy_budget_over_limit_forwarded_total", scope="team") == 0
            with caplog.at_level(logging.WARNING, "portkey_user_proxy"):
                assert await refusal(one.budgets, "alice@example.com", "Finance") is None
                assert await refusal(one.budgets, "alice@example.com", "Finance") is None
            assert one.metric("portkey_user_proxy_budget_over_limit_forwarded_total", scope="team") == 2
            assert one.metric("portkey_user_proxy_budget_over_limit_forwarded_total", scope="user") == 2
            assert one.metric(REFUSALS, scope="team") == 0
            await one.budgets.aclose()

    asyncio.run(scenario())

    warnings = [record.getMessage() for record in caplog.records]
    assert any("the Finance team has used its budget of $500" in message for message in warnings)


@pytest.mark.real_mongo
def test_an_unpriced_model_is_counted_and_warned_about_never_free(
    writable_mongo: WritableMongo, caplog: pytest.LogCaptureFixture
) -> None:
    config = type(CONFIG)(teams=CONFIG.teams)  # no prices at all

    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            await one.budgets.start()
            hold = await one.budgets.admit("alice@example.com", "Finance", Demand("mystery-\x1b[31m", 10, 5))
            with caplog.at_level(logging.WARNING, "portkey_user_proxy"):
                cost = one.budgets.settle(hold, "mystery-\x1b[31m", Usage(10, 5, 15))
            assert cost.nanos == 0 and cost.unpriced_tokens == 15
            assert one.metric("portkey_user_proxy_budget_unpriced_tokens_total") == 15
            assert one.budgets.pending_increments == 0  # nothing to write
            # What doctor shows: each model found unpriced, escaped.
            assert one.budgets.unpriced_models == ["'mystery-\\x1b[31m'"]
            await one.budgets.aclose()

    asyncio.run(scenario())

    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning == (
        "neither BUDGETS_FILE nor the price catalogue prices the model 'mystery-\\x1b[31m': its 15 tokens count as "
        "unpriced, not as spend (`budgets price MODEL` shows what is looked up; add an entry to `prices`, or write "
        "the model with its provider, e.g. openai/...)"
    )


def test_doctor_lists_at_most_a_hundred_unpriced_models_and_an_answer_without_one_as_a_dash(
    writable_mongo: WritableMongo,
) -> None:
    # Model names come from request bodies: the list doctor shows stays bounded whatever clients send.
    config = type(CONFIG)(teams=CONFIG.teams)  # no prices at all

    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            one.budgets.settle(await one.budgets.admit(None, None, SMALL), None, Usage(10, 5, 15))
            assert one.budgets.unpriced_models == ["'-'"]
            for number in range(150):
                one.budgets.settle(await one.budgets.admit(None, None, SMALL), f"model-{number:03}", Usage(1, 1, 2))
            assert len(one.budgets.unpriced_models) == 100
            assert one.budgets.unpriced_models[:2] == ["'-'", "'model-000'"]

    asyncio.run(scenario())


def test_an_outage_keeps_increments_and_writes_them_when_the_store_is_back(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            stand_in.fault = Fault.HANG_UP
            for _ in range(3):
                await answered(one.budgets, "bob@example.com", "Finance")
            assert not await one.budgets.flush()
            assert state_of(one.budgets) is StoreState.UNAVAILABLE
            assert one.budgets.pending_increments == 2  # merged: one per key, whatever the answers
            assert one.metric("portkey_user_proxy_budget_pending_increments") == 2
            assert one.metric("portkey_user_proxy_budget_store_up") == 0

            # BUDGET_STORE_FAILURE=allow: forwarded, on what this replica knows.
            one.ticks.seconds += CACHE_SECONDS
            assert await refusal(one.budgets, "bob@example.com", "Finance") is None
            assert one.metric("portkey_user_proxy_budget_unchecked_total", reason="spend_stale") == 1
            assert not await one.budgets.refresh()
            # ... and what it knows still refuses: $300 here, $200 more elsewhere, would reach $500.
            await answered(one.budgets, "bob@example.com", "Finance")
            await answered(one.budgets, "bob@example.com", "Finance")
            assert await refusal(one.budgets, "bob@example.com", "Finance") is not None

            stand_in.fault = Fault.NONE
            assert await one.budgets.flush()
            assert state_of(one.budgets) is StoreState.AVAILABLE
            assert one.metric("portkey_user_proxy_budget_pending_increments") == 0
            assert one.metric("portkey_user_proxy_budget_store_up") == 1

    asyncio.run(scenario())

    assert stored_spend(writable_mongo)[("month:2026-12-01", "team", "Finance")] == 500 * 10**9


def test_under_deny_a_request_with_a_budget_is_refused_while_spend_cannot_be_read(
    writable_mongo: WritableMongo,
) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo, on_store_failure=StoreFailurePolicy.DENY) as one:
            await one.budgets.start()
            stand_in.fault = Fault.HANG_UP
            one.ticks.seconds += CACHE_SECONDS  # the teams' figures are no longer fresh
            assert not await one.budgets.refresh()

            refused = await refusal(one.budgets, "bob@example.com", "Finance")
            assert refused is not None
            assert (refused.status, refused.code) == (503, "budget_store_unavailable")
            assert refused.headers == ((b"retry-after", b"5"),)
            assert "BUDGET_STORE_FAILURE is deny" in refused.message
            # Nobody with a budget, nothing to check: forwarded.
            assert await refusal(one.budgets, "bob@example.com", "Engineering") is None

            stand_in.fault = Fault.NONE
            assert await one.budgets.refresh()
            assert await refusal(one.budgets, "bob@example.com", "Finance") is None
            await one.budgets.aclose()

    asyncio.run(scenario())


def test_increments_beyond_the_queue_bound_are_dropped_and_counted(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo, max_pending=3) as one:
            await one.budgets.start()
            stand_in.fault = Fault.HANG_UP
            for user in ("a@example.com", "b@example.com", "c@example.com"):
                await answered(one.budgets, user, "Finance")
            assert not await one.budgets.flush()
            assert one.budgets.dropped_increments == 1  # c@example.com's: Finance, a and b fill the queue
            assert one.metric("portkey_user_proxy_budget_dropped_increments_total") == 1

            stand_in.fault = Fault.NONE
            assert await one.budgets.flush()

    asyncio.run(scenario())

    stored = stored_spend(writable_mongo)
    assert stored[("month:2026-12-01", "team", "Finance")] == 300 * 10**9
    assert ("month:2026-12-01", "user", "c@example.com") not in stored


def test_a_store_down_at_start_does_not_stop_the_start(writable_mongo: WritableMongo) -> None:
    stand_in = writable_mongo.stand_in
    if stand_in is None:
        pytest.skip("fails the server at will: stand-in only")

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            stand_in.fault = Fault.UNAUTHORIZED
            await one.budgets.start()
            assert state_of(one.budgets) is StoreState.UNAVAILABLE
            assert not one.budgets.ready  # /readyz answers 503 meanwhile
            await answered(one.budgets, "alice@example.com", "Finance")  # allow, by default: forwarded, counted
            assert one.metric("portkey_user_proxy_budget_unchecked_total", reason="spend_unread") == 1
            await one.budgets.aclose()  # tries once more; the increments stay unwritten
            assert one.budgets.pending_increments == 2

            stand_in.fault = Fault.NONE
            assert await one.budgets.refresh()  # what the read loop does, after its back-off
            assert one.budgets.ready

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_a_budgets_file_read_again_changes_budgets_and_keeps_the_spend(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            await one.budgets.start()
            for _ in range(5):
                await answered(one.budgets, "bob@example.com", "Finance")
            assert await refusal(one.budgets, "bob@example.com", "Finance") is not None

            raised = BudgetConfig(prices=CONFIG.prices, teams={"Finance": Decimal(1000), "Sales": Decimal(10)})
            one.budgets.reconfigure(raised)
            assert await refusal(one.budgets, "bob@example.com", "Finance") is None  # $500 of $1,000
            assert one.metric("portkey_user_proxy_team_budget_limit_usd", team="Finance") == 1000
            assert one.metric("portkey_user_proxy_team_budget_limit_usd", team="Sales") == 10

            one.budgets.reconfigure(BudgetConfig(period=Period.DAY, prices=CONFIG.prices, teams={"Sales": Decimal(1)}))
            assert one.metric("portkey_user_proxy_team_budget_limit_usd", team="Finance") is None  # left the file
            assert one.budgets.window().key == "day:2026-12-04"
            await one.budgets.aclose()

    asyncio.run(scenario())


def test_an_invalid_file_read_again_leaves_the_budgets_in_force(
    writable_mongo: WritableMongo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("teams: {Finance: 500}\n")

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            budgets_file = BudgetsFile(path, one.budgets.config)
            path.write_text("teams: {Finance: lots}\n")
            with caplog.at_level(logging.WARNING, "portkey_user_proxy"):
                assert not reload_budgets(one.budgets, budgets_file, teams_looked_up=True)
            path.write_text("teams: {Finance: 600}\n")
            with caplog.at_level(logging.WARNING, "portkey_user_proxy"):
                assert not reload_budgets(one.budgets, budgets_file, teams_looked_up=False)
            assert one.budgets.config == CONFIG
            assert reload_budgets(one.budgets, budgets_file, teams_looked_up=True)
            assert one.budgets.config.teams == {"Finance": Decimal(600)}

    asyncio.run(scenario())

    first, second = (record.getMessage() for record in caplog.records)
    assert first == (
        f"invalid budgets file {path}: teams.Finance: must be an amount of US dollars, 0 or more, e.g. 500; "
        "the budgets in force are kept"
    )
    assert "TEAM_METADATA_KEY is unset" in second


def test_a_team_that_leaves_the_file_and_comes_back_shows_its_spend_again(writable_mongo: WritableMongo) -> None:
    # Team labels are bounded by the file: a team removed loses its series; restored, it has them again.
    with_sales = BudgetConfig(prices=CONFIG.prices, teams={"Finance": Decimal(500), "Sales": Decimal(10)})

    async def scenario() -> None:
        async with replica(writable_mongo, with_sales) as one:
            one.budgets.reconfigure(CONFIG)  # Sales leaves before any spend of it was read or recorded
            assert one.metric("portkey_user_proxy_team_budget_limit_usd", team="Sales") is None
            await one.budgets.start()
            await answered(one.budgets, "bob@example.com", "Finance")
            one.budgets.reconfigure(BudgetConfig(prices=CONFIG.prices, teams={"Sales": Decimal(10)}))
            assert one.metric("portkey_user_proxy_team_budget_spend_usd", team="Finance") is None

            one.budgets.reconfigure(CONFIG)
            await answered(one.budgets, "bob@example.com", "Finance")
            assert one.metric("portkey_user_proxy_team_budget_spend_usd", team="Finance") == 200
            await one.budgets.aclose()

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_the_report_lists_teams_largest_first_and_those_that_spent_alike_by_name(writable_mongo: WritableMongo) -> None:
    for team, dollars in (("Sales", 5), ("Marketing", 5), ("Finance", 1)):
        spent_elsewhere(writable_mongo, "team", team, dollars)

    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            report = await one.budgets.report()
            assert [(standing.name, standing.spent_nanos, standing.limit_nanos) for standing in report.teams] == [
                ("Marketing", 5 * 10**9, None),
                ("Sales", 5 * 10**9, None),
                ("Finance", 10**9, 500 * 10**9),
            ]

    asyncio.run(scenario())


@pytest.mark.real_mongo
def test_this_replicas_own_spend_counts_once_after_the_store_is_read_again(writable_mongo: WritableMongo) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo) as one:
            assert await one.budgets.refresh()  # what the start reads, without the background's own writes
            await answered(one.budgets, "bob@example.com", "Finance")
            assert await one.budgets.flush()  # written: the store's figure holds it now
            await answered(one.budgets, "bob@example.com", "Finance")  # recorded, not written yet
            one.ticks.seconds += CACHE_SECONDS
            assert await one.budgets.refresh()

            assert one.metric("portkey_user_proxy_team_budget_spend_usd", team="Finance") == 200
            await one.budgets.aclose()

    asyncio.run(scenario())


def test_the_smallest_cost_there_is_is_charged(writable_mongo: WritableMongo) -> None:
    # One token at $0.001 per 1M tokens is one nanodollar: small, and still spend.
    config = BudgetConfig(prices=(Price("*", Decimal("0.001"), Decimal(0)),), teams=CONFIG.teams)

    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            cost = one.budgets.settle(await one.budgets.admit(None, "Finance", SMALL), "gpt-4o", Usage(prompt=1))
            assert cost.nanos == 1
            assert one.budgets.pending_increments == 1  # the team's, to be written
            await one.budgets.aclose()

    asyncio.run(scenario())

    assert stored_spend(writable_mongo) == {("month:2026-12-01", "team", "Finance"): 1}
