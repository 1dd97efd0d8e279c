from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from bson import ObjectId, json_util
from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError, ServerSelectionTimeoutError

from portkey_user_proxy.attribution.directory import (
    PROBE_WAIT_SECONDS,
    Lookup,
    LookupOutcome,
    Unobserved,
    UserDirectory,
)
from portkey_user_proxy.mongodb.failures import MongoFailure
from tests.support.fixtures import FIXTURES

USER_ID = "6651f0c2a1b2c3d4e5f60718"
OTHER_ID = "0123456789abcdef01234567"
UNKNOWN_ID = "ffffffffffffffffffffffff"
TTL = 600.0
UNKNOWN_TTL = 60.0
SECRETS = {"password", "refreshToken", "totpSecret", "backupCodes", "plugins", "personalization"}


def _librechat_user(object_id: str = USER_ID, email: str = "timmanik@email.com") -> dict[str, Any]:
    document: dict[str, Any] = json_util.loads((FIXTURES / "librechat_user.json").read_text())
    document.update({"_id": ObjectId(object_id), "email": email})
    return document


class FakeTopology:
    """What the directory asks pymongo's topology when a lookup fails: was any server reached?"""

    def __init__(self) -> None:
        self.readable = True

    def has_readable_server(self) -> bool:
        return self.readable

    def server_descriptions(self) -> dict[tuple[str, int], Any]:
        error = None if self.readable else ConnectionRefusedError()
        return {("mongodb", 27017): SimpleNamespace(error=error)}


class FakeUsers:
    """LibreChat's `users` collection in memory: counts queries, and can be made to hang or fail."""

    def __init__(self, *documents: dict[str, Any]) -> None:
        self.topology = FakeTopology()
        self.database = SimpleNamespace(name="LibreChat", client=SimpleNamespace(topology_description=self.topology))
        self.documents = list(documents)
        self.queries: list[tuple[dict[str, Any], Mapping[str, Any]]] = []
        self.gate: asyncio.Event | None = None  # while set and closed, every query waits
        self.error: PyMongoError | None = None
        self.started = asyncio.Event()
        self.answered = asyncio.Event()
        self.cancelled = 0
        self.slow_to_cancel: asyncio.Event | None = None  # while closed, a cancelled query keeps going

    async def find_one(self, query: dict[str, Any], projection: Mapping[str, Any]) -> dict[str, Any] | None:
        self.queries.append((query, projection))
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if self.slow_to_cancel is not None:
                await self.slow_to_cancel.wait()  # as a driver closing a connection to a frozen server may
            raise
        if self.error is not None:
            raise self.error
        self.answered.set()
        for document in self.documents:
            # Like MongoDB, the filter matches by value and type: a string never equals an ObjectId.
            if all(type(document.get(k)) is type(v) and document.get(k) == v for k, v in query.items()):
                return {key: value for key, value in document.items() if key == "_id" or projection.get(key)}
        return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _directory(
    users: FakeUsers,
    clock: FakeClock | None = None,
    *,
    timeout: float = 5.0,
    max_entries: int = 100,
    probe_wait: float = PROBE_WAIT_SECONDS,
) -> UserDirectory:
    return UserDirectory(
        users,  # type: ignore[arg-type]
        ttl=TTL,
        unknown_ttl=UNKNOWN_TTL,
        timeout=timeout,
        max_entries=max_entries,
        clock=clock or FakeClock(),
        probe_wait=probe_wait,
    )


def _email(lookup: Lookup) -> str | None:
    return lookup.user.email if lookup.user else None


# --- lookups ----------------------------------------------------------------------------------


def test_found_user_carries_the_fields_placeholders_may_name() -> None:
    async def scenario() -> None:
        lookup = await _directory(FakeUsers(_librechat_user())).find(USER_ID)

        assert lookup.outcome is LookupOutcome.FOUND
        assert lookup.user is not None
        assert lookup.user.id == USER_ID
        assert lookup.user.email == "timmanik@email.com"
        assert lookup.user.fields == {
            "ID": USER_ID,
            "EMAIL": "timmanik@email.com",
            "NAME": "Tim Manik",
            "USERNAME": "timmanik",
            "ROLE": "USER",
            "PROVIDER": "local",
            "EMAILVERIFIED": "true",
            "TWOFACTORENABLED": "false",
            "TERMSACCEPTED": "true",
        }

    asyncio.run(scenario())


def test_query_is_by_object_id_and_projection_never_requests_secrets() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        directory = _directory(users)

        await directory.find(USER_ID)
        await directory.find_by_email("timmanik@email.com")

        (by_id, id_projection), (by_email, email_projection) = users.queries
        assert by_id == {"_id": ObjectId(USER_ID)}
        assert by_email == {"email": "timmanik@email.com"}
        for projection in (id_projection, email_projection):
            assert projection["email"]
            # An inclusion projection: fields not named never leave MongoDB.
            assert all(value == 1 for value in projection.values())
            assert not SECRETS & set(projection)

    asyncio.run(scenario())


def test_fresh_entry_answers_without_a_query() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock)
        await directory.find(USER_ID)

        clock.now += TTL - 1
        lookups = [await directory.find(USER_ID) for _ in range(20)]

        assert len(users.queries) == 1
        assert {lookup.outcome for lookup in lookups} == {LookupOutcome.CACHE_HIT}
        assert {_email(lookup) for lookup in lookups} == {"timmanik@email.com"}

    asyncio.run(scenario())


def test_expired_entry_is_looked_up_again_and_sees_a_changed_email() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock)
        await directory.find(USER_ID)
        users.documents = [_librechat_user(email="tim.manik@example.com")]

        clock.now += TTL
        lookup = await directory.find(USER_ID)

        assert len(users.queries) == 2
        assert lookup.outcome is LookupOutcome.FOUND
        assert _email(lookup) == "tim.manik@example.com"

    asyncio.run(scenario())


def test_unknown_user_is_remembered_for_the_shorter_ttl() -> None:
    async def scenario() -> None:
        users = FakeUsers()
        clock = FakeClock()
        directory = _directory(users, clock)

        first = await directory.find(USER_ID)
        clock.now += UNKNOWN_TTL - 1
        remembered = await directory.find(USER_ID)
        assert (first.outcome, remembered.outcome) == (LookupOutcome.NOT_FOUND, LookupOutcome.NOT_FOUND)
        assert first.user is None and remembered.user is None
        assert len(users.queries) == 1

        users.documents = [_librechat_user()]  # the user signs up
        clock.now += 1
        lookup = await directory.find(USER_ID)

        assert len(users.queries) == 2
        assert lookup.outcome is LookupOutcome.FOUND

    asyncio.run(scenario())


def test_find_by_email_ignores_case_and_surrounding_space() -> None:
    async def scenario() -> None:
        directory = _directory(FakeUsers(_librechat_user()))

        found = await directory.find_by_email("  TimManik@Email.COM ")
        missing = await directory.find_by_email("nobody@example.com")

        assert found is not None and found.id == USER_ID
        assert missing is None

    asyncio.run(scenario())


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_misses_for_one_user_share_one_query() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.gate = asyncio.Event()
        directory = _directory(users)

        async def open_gate_once_queried() -> None:
            await users.started.wait()
            assert users.gate is not None
            users.gate.set()

        lookups, _ = await asyncio.gather(
            asyncio.gather(*(directory.find(USER_ID) for _ in range(50))), open_gate_once_queried()
        )

        assert len(users.queries) == 1
        assert {lookup.outcome for lookup in lookups} == {LookupOutcome.FOUND}
        assert {_email(lookup) for lookup in lookups} == {"timmanik@email.com"}

    asyncio.run(scenario())


def test_concurrent_misses_for_different_users_are_never_mixed_up() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user(USER_ID, "tim@example.com"), _librechat_user(OTHER_ID, "ada@example.com"))
        users.gate = asyncio.Event()
        directory = _directory(users)
        ids = [USER_ID, OTHER_ID, UNKNOWN_ID] * 20

        async def open_gate() -> None:
            await users.started.wait()
            assert users.gate is not None
            users.gate.set()

        lookups, _ = await asyncio.gather(
            asyncio.gather(*(directory.find(object_id) for object_id in ids)), open_gate()
        )

        expected = {USER_ID: "tim@example.com", OTHER_ID: "ada@example.com", UNKNOWN_ID: None}
        assert [_email(lookup) for lookup in lookups] == [expected[object_id] for object_id in ids]
        assert sorted(str(query["_id"]) for query, _ in users.queries) == sorted(expected)

    asyncio.run(scenario())


def test_cancelled_waiter_does_not_cancel_the_query_others_share() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.gate = asyncio.Event()
        directory = _directory(users)
        leaving = asyncio.create_task(directory.find(USER_ID))
        staying = asyncio.create_task(directory.find(USER_ID))
        await users.started.wait()

        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        users.gate.set()
        lookup = await staying

        assert lookup.outcome is LookupOutcome.FOUND
        assert _email(lookup) == "timmanik@email.com"
        assert len(users.queries) == 1
        assert users.cancelled == 0

    asyncio.run(scenario())


def test_query_whose_only_waiter_left_still_fills_the_cache() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.gate = asyncio.Event()
        directory = _directory(users)
        leaving = asyncio.create_task(directory.find(USER_ID))
        await users.started.wait()

        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        users.gate.set()
        joined = await directory.find(USER_ID)
        later = await directory.find(USER_ID)

        assert _email(joined) == "timmanik@email.com"
        assert later.outcome is LookupOutcome.CACHE_HIT
        assert len(users.queries) == 1
        assert users.cancelled == 0

    asyncio.run(scenario())


# --- MongoDB slow or down ---------------------------------------------------------------------


def test_slow_query_is_bounded_by_the_lookup_timeout() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.gate = asyncio.Event()  # never opened: MongoDB does not answer
        directory = _directory(users, timeout=0.05)

        started = time.monotonic()
        lookups = await asyncio.gather(*(directory.find(USER_ID) for _ in range(10)))
        elapsed = time.monotonic() - started

        assert {lookup.outcome for lookup in lookups} == {LookupOutcome.TIMEOUT}
        assert all(lookup.user is None and lookup.mongo_failed for lookup in lookups)
        assert elapsed < 2.0  # generous: the point is "bounded", not the exact figure
        assert len(users.queries) == 1
        assert users.cancelled == 1  # the abandoned query does not linger

    asyncio.run(scenario())


def test_the_lookup_timeout_holds_while_the_driver_is_slow_to_cancel_the_query() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.gate = asyncio.Event()  # MongoDB never answers ...
        users.slow_to_cancel = asyncio.Event()  # ... and the driver takes its time over the cancelled query
        directory = _directory(users, timeout=0.05)

        started = time.monotonic()
        lookups = await asyncio.wait_for(asyncio.gather(*(directory.find(USER_ID) for _ in range(10))), 5)
        readiness = await asyncio.wait_for(directory.readiness(), 5)
        elapsed = time.monotonic() - started

        assert {lookup.outcome for lookup in lookups} == {LookupOutcome.TIMEOUT}
        assert readiness is MongoFailure.TIMEOUT
        assert elapsed < 1.0  # two lookup timeouts, not the driver's cleanup
        users.slow_to_cancel.set()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ServerSelectionTimeoutError("mongodb:27017: [Errno 111] Connection refused"), LookupOutcome.UNREACHABLE),
        (AutoReconnect("connection closed"), LookupOutcome.UNREACHABLE),
        (OperationFailure("not authorized on LibreChat to execute command", code=13), LookupOutcome.UNAUTHORIZED),
        (OperationFailure("Authentication failed.", code=18), LookupOutcome.UNAUTHORIZED),
        (OperationFailure("operation exceeded time limit", code=50), LookupOutcome.TIMEOUT),
        (OperationFailure("BadValue", code=2), LookupOutcome.ERROR),
    ],
)
def test_mongodb_error_without_a_cached_user_is_reported_not_raised(
    error: PyMongoError, outcome: LookupOutcome
) -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.error = error

        lookup = await _directory(users).find(USER_ID)

        assert lookup.outcome is outcome
        assert lookup.user is None
        assert lookup.mongo_failed

    asyncio.run(scenario())


def test_failures_are_not_cached_so_the_directory_recovers_when_mongodb_returns() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock)
        users.error = ServerSelectionTimeoutError("down")
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.UNREACHABLE

        users.error = None
        clock.now += 1  # past the outage window: this lookup sends the probe and waits for its answer
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.FOUND
        lookup = await directory.find(USER_ID)

        assert lookup.outcome is LookupOutcome.CACHE_HIT
        assert len(users.queries) == 2

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", ["error", "timeout"])
def test_failure_falls_back_to_the_stale_entry(failure: str) -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock, timeout=0.05)
        await directory.find(USER_ID)
        clock.now += TTL + 1
        if failure == "error":
            users.error = ServerSelectionTimeoutError("down")
        else:
            users.gate = asyncio.Event()

        lookup = await directory.find(USER_ID)

        assert lookup.outcome is LookupOutcome.STALE
        assert _email(lookup) == "timmanik@email.com"
        assert not lookup.mongo_failed

    asyncio.run(scenario())


def test_stale_entry_spares_mongodb_for_a_while_then_is_refreshed() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock)
        await directory.find(USER_ID)
        clock.now += TTL + 1
        users.error = ServerSelectionTimeoutError("down")
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.STALE

        during_outage = [await directory.find(USER_ID) for _ in range(10)]
        assert len(users.queries) == 2  # an outage costs one timeout per retry interval, not one per request
        assert {_email(lookup) for lookup in during_outage} == {"timmanik@email.com"}

        clock.now += 2  # past the outage window (1 s after a first failure), within the retry interval (5 s)
        assert (await directory.find(USER_ID)).user is not None
        assert len(users.queries) == 2  # the stale entry, kept for the retry interval, still spares MongoDB

        users.error = None
        clock.now += UNKNOWN_TTL + 1
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.FOUND  # the probe, answered at once
        refreshed = await directory.find(USER_ID)

        assert refreshed.outcome is LookupOutcome.CACHE_HIT
        assert len(users.queries) == 3

    asyncio.run(scenario())


# --- size -------------------------------------------------------------------------------------


def test_max_entries_evicts_the_oldest_entry() -> None:
    async def scenario() -> None:
        ids = [USER_ID, OTHER_ID, UNKNOWN_ID]
        users = FakeUsers(*(_librechat_user(object_id, f"{object_id}@example.com") for object_id in ids))
        directory = _directory(users, max_entries=2)
        for object_id in ids:
            await directory.find(object_id)
        assert len(users.queries) == 3

        kept = [await directory.find(object_id) for object_id in ids[1:]]
        assert {lookup.outcome for lookup in kept} == {LookupOutcome.CACHE_HIT}
        assert len(users.queries) == 3

        evicted = await directory.find(USER_ID)

        assert evicted.outcome is LookupOutcome.FOUND
        assert len(users.queries) == 4

    asyncio.run(scenario())


# --- outages ----------------------------------------------------------------------------------


def test_after_a_failure_users_not_cached_skip_mongodb_until_the_window_ends() -> None:
    async def scenario() -> None:
        others = [f"{n:024x}" for n in range(1, 6)]
        users = FakeUsers(_librechat_user(), *(_librechat_user(o, f"{o}@example.com") for o in others))
        clock = FakeClock()
        directory = _directory(users, clock)
        users.error = ServerSelectionTimeoutError("down")
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.UNREACHABLE

        during = [await directory.find(other) for other in others]

        assert {lookup.outcome for lookup in during} == {LookupOutcome.BACKOFF}
        assert all(lookup.mongo_failed and lookup.user is None for lookup in during)
        assert len(users.queries) == 1  # nobody waited on MongoDB

    asyncio.run(scenario())


@pytest.mark.parametrize("refused", ["lookup", "readiness"])
def test_once_mongodb_is_back_the_first_user_after_the_window_is_resolved(refused: str) -> None:
    async def scenario() -> None:
        others = [f"{n:024x}" for n in range(1, 4)]
        users = FakeUsers(*(_librechat_user(o, f"{o}@example.com") for o in others))
        clock = FakeClock()
        directory = _directory(users, clock)
        users.error = OperationFailure("not authorized", code=13)  # one refused read, then all is well
        await (directory.find(others[0]) if refused == "lookup" else directory.readiness())
        users.error = None
        clock.now += 8

        after = [await directory.find(other) for other in others]

        assert [lookup.outcome for lookup in after] == [LookupOutcome.FOUND] * 3
        assert [_email(lookup) for lookup in after] == [f"{o}@example.com" for o in others]

    asyncio.run(scenario())


def test_a_probe_that_mongodb_does_not_answer_at_once_holds_requests_a_moment_only() -> None:
    async def scenario() -> None:
        others = [f"{n:024x}" for n in range(1, 4)]
        users = FakeUsers(*(_librechat_user(o, f"{o}@example.com") for o in others))
        clock = FakeClock()
        directory = _directory(users, clock, probe_wait=0.05)
        users.error = ServerSelectionTimeoutError("down")
        await directory.find(others[0])
        users.error = None
        users.gate = asyncio.Event()  # MongoDB answers, slowly
        clock.now += 1

        started = time.monotonic()
        waited = await asyncio.gather(*(directory.find(other) for other in others))  # the first one probes
        elapsed = time.monotonic() - started

        assert {lookup.outcome for lookup in waited} == {LookupOutcome.BACKOFF}
        assert elapsed < 1.0  # the probe wait, not the lookup timeout (5 s here)
        assert len(users.queries) == 2  # the others waited for the probe instead of asking
        users.gate.set()
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))  # the probe, going on alone
        assert (await directory.find(others[0])).outcome is LookupOutcome.CACHE_HIT  # the probe's answer
        assert (await directory.find(others[1])).outcome is LookupOutcome.FOUND  # the window closed

    asyncio.run(scenario())


def test_requests_that_come_during_a_probe_mongodb_answers_are_looked_up_not_skipped() -> None:
    async def scenario() -> None:
        others = [f"{n:024x}" for n in range(1, 4)]
        users = FakeUsers(*(_librechat_user(o, f"{o}@example.com") for o in others))
        clock = FakeClock()
        directory = _directory(users, clock, probe_wait=5.0)
        users.error = ServerSelectionTimeoutError("down")
        await directory.find(others[0])
        users.error = None
        users.gate = asyncio.Event()
        users.started.clear()
        clock.now += 1

        async def answer_once_asked() -> None:
            await users.started.wait()  # the probe is out, the others wait for it
            users.gate = None
            gate.set()

        gate = users.gate
        *found, _ = await asyncio.gather(*(directory.find(other) for other in others), answer_once_asked())

        assert [_email(lookup) for lookup in found if lookup] == [f"{o}@example.com" for o in others]
        assert [lookup.outcome for lookup in found if lookup] == [LookupOutcome.FOUND] * 3

    asyncio.run(scenario())


def test_a_cached_user_keeps_their_email_while_the_window_is_open() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user(), _librechat_user(OTHER_ID, "other@example.com"))
        clock = FakeClock()
        directory = _directory(users, clock)
        await directory.find(USER_ID)
        clock.now += TTL + 1
        users.error = ServerSelectionTimeoutError("down")
        await directory.find(OTHER_ID)  # opens the window

        lookup = await directory.find(USER_ID)

        assert lookup.outcome is LookupOutcome.STALE
        assert _email(lookup) == "timmanik@email.com"
        assert len(users.queries) == 2

    asyncio.run(scenario())


def test_failures_are_warned_about_naming_the_server_and_database(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        users.error = OperationFailure("not authorized", code=13, details={"codeName": "Unauthorized"})
        clock = FakeClock()
        directory = _directory(users, clock)
        for _ in range(5):
            await directory.find(USER_ID)
            clock.now += 60

    asyncio.run(scenario())

    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1  # rate-limited: one outage, one line
    assert warnings[0].getMessage() == (
        "MongoDB at mongodb:27017/LibreChat: refused the lookup (unauthorized) (OperationFailure code 13 "
        "Unauthorized); users not cached are attributed by UNRESOLVED_USER_POLICY, MongoDB is asked again in 1 s; "
        "MONGO_URI needs a user (and authSource) with read access to LibreChat's database"
    )


class AnsweredNotes(Unobserved):
    """What the `mongodb_up` gauge is told."""

    def __init__(self) -> None:
        self.answered: list[bool] = []

    def mongodb_answered(self, answered: bool) -> None:
        self.answered.append(answered)


def test_each_lookup_tells_whether_mongodb_answered() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        notes = AnsweredNotes()
        directory = UserDirectory(
            users,  # type: ignore[arg-type]
            ttl=TTL,
            unknown_ttl=UNKNOWN_TTL,
            timeout=5.0,
            max_entries=100,
            clock=clock,
            observer=notes,
        )
        users.error = OperationFailure("not authorized", code=13, details={"codeName": "Unauthorized"})
        await directory.find(USER_ID)
        users.error = None
        clock.now += 60  # past the outage window
        await directory.find(USER_ID)

        assert notes.answered == [False, True]

    asyncio.run(scenario())


def test_readiness_is_an_authorised_read_cached_for_a_moment() -> None:
    async def scenario() -> None:
        users = FakeUsers(_librechat_user())
        clock = FakeClock()
        directory = _directory(users, clock)
        users.error = OperationFailure("not authorized", code=13)

        assert await directory.readiness() is MongoFailure.UNAUTHORIZED
        users.error = None
        assert await directory.readiness() is MongoFailure.UNAUTHORIZED  # cached
        assert len(users.queries) == 1
        clock.now += 2

        assert await directory.readiness() is None
        assert (await directory.find(USER_ID)).outcome is LookupOutcome.FOUND  # the window is closed too

    asyncio.run(scenario())
