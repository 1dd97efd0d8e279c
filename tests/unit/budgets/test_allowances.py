"""An allowance for every member of a group: `teams: {Engineering: {budget: 2000, each: 20}}`.

A member's own limit is their entry under `users`, else the highest `each` of their groups, else
`users.default`; the 412 says which limit was reached; spend stays per user.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from portkey_user_proxy.answers import answer_for
from portkey_user_proxy.budgets import BudgetConfig, BudgetExceeded, Demand, Price, parse_budgets
from portkey_user_proxy.budgets.file import BudgetFileError
from portkey_user_proxy.budgets.limits import UserLimit, UserLimits
from portkey_user_proxy.dialects.usage import Usage
from tests.support.budget_replicas import replica
from tests.support.mongomock_server import WritableMongo

FILE = """\
prices: [{model: "*", input: 1000000, output: 1000000}]
teams:
  Finance: 500
  Engineering: {budget: 2000, each: 20}
  Research: {each: 35}
users:
  default: 10
  carol@example.com: 50
"""
SMALL = Demand("m", 0, 1)
FIVE_DOLLARS = Usage(prompt=5, completion=0, total=5)


@pytest.fixture
def config() -> BudgetConfig:
    return parse_budgets(FILE, "budgets.yaml")


def test_the_file_gives_pools_and_allowances_apart_and_the_number_form_is_unchanged(config: BudgetConfig) -> None:
    assert config.teams == {"Finance": Decimal(500), "Engineering": Decimal(2000)}
    assert config.allowances == {"Engineering": Decimal(20), "Research": Decimal(35)}
    assert parse_budgets("teams: {Finance: 500}", "f").allowances == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "teams: {Eng: {}}",
            "teams.Eng: a team needs `budget` (its shared pool), `each` (every member's own), or both",
        ),
        ("teams: {Eng: {each: -1}}", "teams.Eng.each: must be an amount of US dollars, 0 or more, e.g. 500"),
        ("teams: {Eng: {per_member: 5}}", "teams.Eng.per_member: is not a key of a team (budget, each)"),
    ],
)
def test_a_team_entry_that_is_wrong_is_named_with_its_key(text: str, problem: str) -> None:
    with pytest.raises(BudgetFileError) as refused:
        parse_budgets(text, "budgets.yaml")

    assert refused.value.problem == problem


def test_a_users_limit_is_their_own_entry_else_their_groups_highest_allowance_else_the_default(
    config: BudgetConfig,
) -> None:
    limits = UserLimits(config)

    assert limits.of("bob@example.com", ["engineering"]) == UserLimit(20 * 10**9, "Engineering")
    assert limits.of("bob@example.com", ["Engineering", "Research", "Finance"]) == UserLimit(35 * 10**9, "Research")
    assert limits.of("carol@example.com", ["Research"]) == UserLimit(50 * 10**9)  # a named user always wins
    assert limits.of("dave@example.com", ["Finance"]) == UserLimit(10 * 10**9)  # no allowance: the default
    assert limits.of("dave@example.com") == UserLimit(10 * 10**9)


def test_a_member_is_refused_at_their_allowance_while_the_teams_pool_has_room(
    writable_mongo: WritableMongo, config: BudgetConfig
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            await one.budgets.start()
            for _ in range(4):  # $20 of the Engineering allowance, $20 of the team's $2,000
                hold = await one.budgets.admit("bob@example.com", "Engineering", SMALL, ["Engineering"])
                one.budgets.settle(hold, "m", FIVE_DOLLARS)

            with pytest.raises(BudgetExceeded) as refused:
                await one.budgets.admit("bob@example.com", "Engineering", SMALL, ["Engineering"])
            # Another member has their own $20: the pool is not what stopped bob.
            other = await one.budgets.admit("erin@example.com", "Engineering", SMALL, ["Engineering"])
            one.budgets.release(other)
            await one.budgets.aclose()

        answer = answer_for(refused.value)
        assert answer is not None and answer.status == 412
        assert answer.message.startswith("you have used your Engineering allowance of $20 for ")

    asyncio.run(scenario())


def test_a_named_user_above_the_allowance_and_a_person_in_two_groups(
    writable_mongo: WritableMongo, config: BudgetConfig
) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo, config) as one:
            await one.budgets.start()
            for user, groups in (
                ("carol@example.com", ["Engineering"]),
                ("frank@example.com", ["Engineering", "Research"]),
            ):
                for _ in range(6):  # $30: over Engineering's $20, within carol's $50 and Research's $35
                    hold = await one.budgets.admit(user, "Engineering", SMALL, groups)
                    one.budgets.settle(hold, "m", FIVE_DOLLARS)
            await one.budgets.flush()  # the report reads the store
            report = await one.budgets.report(groups_of=_groups)
            await one.budgets.aclose()

        limits = {standing.name: (standing.limit_nanos, standing.allowance_of) for standing in report.users}
        assert limits == {"carol@example.com": (50 * 10**9, None), "frank@example.com": (35 * 10**9, "Research")}

    asyncio.run(scenario())


async def _groups(email: str) -> list[str]:
    return ["Engineering", "Research"] if email.startswith("frank") else ["Engineering"]


def test_without_allowances_the_prices_and_limits_are_as_before() -> None:
    config = BudgetConfig(prices=(Price("*", Decimal(1), Decimal(1)),), users={"a@example.com": Decimal(5)})

    assert UserLimits(config).of("a@example.com", ["Engineering"]) == UserLimit(5 * 10**9)
    assert UserLimits(config).of("b@example.com", ["Engineering"]) is None
