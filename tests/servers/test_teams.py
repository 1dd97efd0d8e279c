"""A user's team is chosen from LibreChat's groups and looked up, cached and bounded with the user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, PyMongoError

from portkey_user_proxy.attribution.directory import LookupOutcome, Unobserved, UserDirectory
from portkey_user_proxy.attribution.teams import TeamChoice, TeamFinder, member_key
from tests.support.fixtures import load_fixture
from tests.support.librechat import (
    ADA,
    ADA_ON_ENTRA,
    NOBODY,
    TIM,
    TTL,
    UNKNOWN_TTL,
    Mongo,
    group_document,
    team_directory,
    teams_of,
    user_document,
)
from tests.support.proxy import FindCounter


@pytest.fixture
def librechat(mongo: Mongo, librechat_user: dict[str, Any]) -> Mongo:
    """LibreChat's users (local and Entra) and its two fixture groups."""
    mongo.add_user(
        user_document(librechat_user, ADA, "ada@corp.example", idOnTheSource=ADA_ON_ENTRA, provider="openid")
    )
    mongo.add_user(user_document(librechat_user, NOBODY, "nobody@email.com"))
    for group in load_fixture("librechat_groups.json"):
        mongo.add_group(group)
    return mongo


# --- the choice -------------------------------------------------------------------------------


def test_without_a_list_the_alphabetically_first_group_ignoring_case_is_the_team() -> None:
    assert TeamChoice().choose(["Finance", "engineering", "Sales"]) == "engineering"
    assert TeamChoice().choose([" Ops ", None, "", 7]) == "Ops"


def test_with_a_list_the_first_listed_group_the_user_is_in_is_the_team() -> None:
    choice = TeamChoice(["Finance", "engineering"])

    assert choice.choose(["Engineering", "Finance", "Aardvarks"]) == "Finance"
    assert choice.choose(["Engineering", "Aardvarks"]) == "Engineering"  # listed names match ignoring case
    assert choice.choose(["Aardvarks", "Sales"]) is None  # groups not listed never make a team


def test_no_group_means_no_team() -> None:
    assert TeamChoice().choose([]) is None


def test_groups_list_entra_users_by_their_source_id_and_local_users_by_their_id() -> None:
    assert member_key({"_id": ObjectId(ADA), "idOnTheSource": ADA_ON_ENTRA}) == ADA_ON_ENTRA
    assert member_key({"_id": ObjectId(TIM)}) == TIM
    assert member_key({"_id": ObjectId(TIM), "idOnTheSource": ""}) == TIM


# --- against LibreChat's collections (the stand-in, or TEST_MONGO_URI) ------------------------


def test_teams_of_local_entra_and_groupless_users(librechat: Mongo) -> None:
    teams = asyncio.run(teams_of(librechat, TIM, ADA, NOBODY))

    assert teams == ["Engineering", "Engineering", None]


def test_team_groups_pick_the_first_listed_group_the_user_is_in(librechat: Mongo) -> None:
    teams = asyncio.run(teams_of(librechat, TIM, ADA, NOBODY, preferred=("Finance", "Engineering")))

    assert teams == ["Finance", "Engineering", None]


def test_a_user_in_no_listed_group_gets_no_team(librechat: Mongo) -> None:
    teams = asyncio.run(teams_of(librechat, TIM, ADA, preferred=("Sales",)))

    assert teams == [None, None]


def test_a_user_with_a_source_id_is_not_matched_by_their_object_id(librechat: Mongo) -> None:
    # LibreChat's own rule: a user with `idOnTheSource` is a member under that id alone.
    librechat.add_group(group_document("Aardvarks", ADA))

    assert asyncio.run(teams_of(librechat, ADA)) == ["Engineering"]


def test_a_tenant_user_counts_only_their_own_tenants_groups(librechat: Mongo, librechat_user: dict[str, Any]) -> None:
    corp, acme = "bbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccc"
    librechat.add_user(user_document(librechat_user, corp, "c@corp.example", idOnTheSource="corp-1", tenantId="corp"))
    librechat.add_user(user_document(librechat_user, acme, "a@acme.example", idOnTheSource="acme-1", tenantId="acme"))
    librechat.add_group(group_document("Corp team", "corp-1", "acme-1", tenantId="corp"))

    assert asyncio.run(teams_of(librechat, corp, acme)) == ["Corp team", None]


def test_team_is_cached_with_the_user_one_groups_query_per_miss(librechat: Mongo) -> None:
    async def scenario() -> dict[str, int]:
        counter = FindCounter()
        directory = team_directory(AsyncMongoClient(librechat.uri, event_listeners=[counter]))
        concurrent = await asyncio.gather(*(directory.find(TIM) for _ in range(20)))
        later = [await directory.find(TIM) for _ in range(20)]
        await directory.close()
        assert {lookup.user.team for lookup in concurrent + later if lookup.user} == {"Engineering"}
        assert {lookup.outcome for lookup in later} == {LookupOutcome.CACHE_HIT}
        return dict(counter.by_collection)

    assert asyncio.run(scenario()) == {"users": 1, "groups": 1}


# --- groups that cannot be read -----------------------------------------------------------------


class OneUser:
    """`users` holding one LibreChat user, on a server that answers (what failures are classified by)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.queries = 0
        topology = SimpleNamespace(has_readable_server=lambda: True)
        self.database = SimpleNamespace(name="LibreChat", client=SimpleNamespace(topology_description=topology))

    async def find_one(self, query: dict[str, Any], projection: Mapping[str, Any]) -> dict[str, Any] | None:
        self.queries += 1
        return self.document if query == {"_id": self.document["_id"]} else None


class TroubledGroups:
    """`groups` answering with fixed names, or failing, or hanging until cancelled."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.error: PyMongoError | None = None
        self.hang = False
        self.queries = 0
        self.cancelled = 0

    def find(self, query: dict[str, Any], projection: Mapping[str, Any]) -> TroubledGroups:
        return self

    async def to_list(self, length: int | None) -> list[dict[str, Any]]:
        self.queries += 1
        try:
            if self.hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return [{"name": name} for name in self.names]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _troubled_directory(
    librechat_user: dict[str, Any], groups: TroubledGroups, clock: FakeClock, timeout: float = 5.0
) -> tuple[UserDirectory, OneUser]:
    users = OneUser(librechat_user)
    directory = UserDirectory(
        users,  # type: ignore[arg-type]
        ttl=TTL,
        unknown_ttl=UNKNOWN_TTL,
        timeout=timeout,
        max_entries=100,
        clock=clock,
        teams=TeamFinder(groups, TeamChoice()),  # type: ignore[arg-type]
    )
    return directory, users


def test_hanging_groups_leave_the_team_out_within_the_lookup_timeout(librechat_user: dict[str, Any]) -> None:
    async def scenario() -> None:
        groups = TroubledGroups("Finance")
        groups.hang = True
        directory, _ = _troubled_directory(librechat_user, groups, FakeClock(), timeout=0.2)

        started = time.monotonic()
        lookup = await directory.find(TIM)
        elapsed = time.monotonic() - started

        assert lookup.outcome is LookupOutcome.FOUND
        assert lookup.user is not None and lookup.user.email == "timmanik@email.com"
        assert lookup.user.team is None
        assert elapsed < 2.0  # generous: the point is "bounded by the lookup timeout", not the figure
        await background_ended()  # the read goes on for its own timeout, then is given up
        assert groups.cancelled == 1  # the abandoned groups query does not linger

    asyncio.run(scenario())


def test_failing_groups_keep_the_user_cached_and_only_the_team_is_read_again(librechat_user: dict[str, Any]) -> None:
    async def scenario() -> None:
        groups = TroubledGroups("Finance")
        clock = FakeClock()
        directory, users = _troubled_directory(librechat_user, groups, clock)
        assert (await directory.find(TIM)).user.team == "Finance"  # type: ignore[union-attr]

        clock.now += TTL
        groups.error = AutoReconnect("connection closed")
        during = await directory.find(TIM)
        assert during.outcome is LookupOutcome.FOUND
        assert during.user is not None and during.user.team == "Finance"  # the last team known

        groups.error = None
        groups.names = ["Sales"]
        resting = await directory.find(TIM)  # groups failed moments ago: not asked yet
        clock.now += 1  # the outage window of groups ends
        answered_at_once = await directory.find(TIM)  # reads the team in the background
        await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()})
        after = await directory.find(TIM)

        assert resting.user == answered_at_once.user == during.user
        assert answered_at_once.outcome is LookupOutcome.CACHE_HIT
        assert after.outcome is LookupOutcome.CACHE_HIT
        assert after.user is not None and after.user.team == "Sales"
        assert (users.queries, groups.queries) == (2, 3)  # the email stays cached for its whole TTL

    asyncio.run(scenario())


def test_hanging_groups_back_off_so_new_users_wait_once(librechat_user: dict[str, Any]) -> None:
    async def scenario() -> list[bool]:
        others = [f"{n:024x}" for n in range(1, 6)]
        groups = TroubledGroups("Finance")
        groups.hang = True
        users = ManyUsers([{**librechat_user, "_id": ObjectId(other)} for other in (TIM, *others)])
        seen = TeamsSeen()
        directory = UserDirectory(
            users,  # type: ignore[arg-type]
            ttl=TTL,
            unknown_ttl=UNKNOWN_TTL,
            timeout=0.2,
            max_entries=100,
            clock=FakeClock(),
            observer=seen,
            teams=TeamFinder(groups, TeamChoice()),  # type: ignore[arg-type]
        )
        await directory.find(TIM)  # waits the lookup timeout: nobody knew yet that groups hang
        await background_ended()  # the read fails once its own lookup timeout is over: groups rest

        started = time.monotonic()
        lookups = [await directory.find(other) for other in others]
        elapsed = time.monotonic() - started

        assert {lookup.outcome for lookup in lookups} == {LookupOutcome.FOUND}
        assert {lookup.user.team for lookup in lookups if lookup.user} == {None}
        assert elapsed < 0.2  # less than one lookup timeout for all five together
        assert groups.queries == 1
        return seen.answered

    assert asyncio.run(scenario()) == [False]


class ManyUsers(OneUser):
    def __init__(self, documents: list[dict[str, Any]]) -> None:
        super().__init__(documents[0])
        self.documents = {document["_id"]: document for document in documents}

    async def find_one(self, query: dict[str, Any], projection: Mapping[str, Any]) -> dict[str, Any] | None:
        self.queries += 1
        return self.documents.get(query["_id"])


class TeamsSeen(Unobserved):
    def __init__(self) -> None:
        self.answered: list[bool] = []

    def teams_answered(self, answered: bool) -> None:
        self.answered.append(answered)


def test_failing_groups_without_an_earlier_team_send_none_and_say_why_once(
    librechat_user: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        groups = TroubledGroups("Finance")
        groups.error = AutoReconnect("connection closed")
        clock = FakeClock()
        directory, _ = _troubled_directory(librechat_user, groups, clock)

        lookup = await directory.find(TIM)
        clock.now += 10
        await directory.find(TIM)

        assert lookup.outcome is LookupOutcome.FOUND
        assert lookup.user is not None and lookup.user.team is None

    asyncio.run(scenario())
    warnings = [record.getMessage() for record in caplog.records if "groups" in record.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "reading LibreChat's groups failed: unreachable (AutoReconnect); teams are left out (cached users keep "
        "their last team) and groups are asked again in 1 s; check MONGO_URI's host"
    )


class SlowUser(OneUser):
    """`users` answering in a fixed time: a healthy but slow MongoDB."""

    def __init__(self, document: dict[str, Any], seconds: float) -> None:
        super().__init__(document)
        self.seconds = seconds

    async def find_one(self, query: dict[str, Any], projection: Mapping[str, Any]) -> dict[str, Any] | None:
        await asyncio.sleep(self.seconds)
        return await super().find_one(query, projection)


class GatedGroups(TroubledGroups):
    """`groups` that answer once the test opens the gate."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.gate = asyncio.Event()

    async def to_list(self, length: int | None) -> list[dict[str, Any]]:
        await self.gate.wait()
        return await super().to_list(length)


def test_a_team_read_that_outlasts_the_requests_time_is_no_failure_and_serves_the_next_request(
    librechat_user: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Each query takes half the lookup timeout: the first request cannot wait for both, the team still comes."""

    async def scenario() -> list[bool]:
        groups = GatedGroups("Finance")
        seen = TeamsSeen()
        directory = UserDirectory(
            SlowUser(librechat_user, seconds=0.5),  # type: ignore[arg-type]
            ttl=TTL,
            unknown_ttl=UNKNOWN_TTL,
            timeout=1.0,
            max_entries=100,
            clock=FakeClock(),
            observer=seen,
            teams=TeamFinder(groups, TeamChoice()),  # type: ignore[arg-type]
        )
        first = await directory.find(TIM)  # half the timeout is left for groups, which have not answered
        groups.gate.set()  # groups answer within the lookup timeout of their own read
        await background_ended()
        second = await directory.find(TIM)

        assert first.outcome is LookupOutcome.FOUND
        assert first.user is not None and first.user.team is None  # the request's time stays bounded
        assert second.outcome is LookupOutcome.CACHE_HIT
        assert second.user is not None and second.user.team == "Finance"
        assert groups.queries == 1
        return seen.answered

    assert asyncio.run(scenario()) == [True]  # teams_readable never dropped to 0
    assert not [record for record in caplog.records if "groups" in record.getMessage()]


async def background_ended() -> None:
    """Wait for what the directory left running: team reads, abandoned queries."""
    if others := asyncio.all_tasks() - {asyncio.current_task()}:
        await asyncio.wait(others)
