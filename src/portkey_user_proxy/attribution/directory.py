"""LibreChat's users, read from its MongoDB through a per-user cache.

The request path asks `UserDirectory.find(object_id)`. A fresh cache entry answers without a query;
concurrent misses for one user share a single query; every query is bounded by the lookup timeout
(`query_deadline.py`), and when MongoDB fails a stale entry is served if there is one. After a
failure, users not cached skip MongoDB for the outage window (`outage.py`) instead of each waiting
the timeout; when it ends, one query probes MongoDB and requests wait a moment for its answer, so a
MongoDB that is back resolves every user at once. Teams are read with their user, failures of
`groups` handled apart (`team_reads.py`). Nothing here raises on the request path: the outcome
says what happened.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from ..mongodb.client import librechat_database, mongo_client
from ..mongodb.failures import Failure, MongoFailure, advice, classify, location
from ..observability.logs import RateLimitedWarnings
from .outage import Admission, MongoState, OutageWindow
from .query_deadline import QueryDeadline
from .team_reads import TeamRead, TeamReads, member_fields
from .teams import USER_FIELDS, TeamFinder, tenant_of

logger = logging.getLogger("portkey_user_proxy.attribution.directory")

# LibreChat user fields that placeholders may name, by placeholder suffix (`{{LIBRECHAT_USER_EMAIL}}`).
# The projection asks for these alone: password hashes, tokens and TOTP secrets never leave MongoDB.
PLACEHOLDER_FIELDS: Mapping[str, str] = {
    "EMAIL": "email",
    "NAME": "name",
    "USERNAME": "username",
    "ROLE": "role",
    "PROVIDER": "provider",
    "EMAILVERIFIED": "emailVerified",
    "TWOFACTORENABLED": "twoFactorEnabled",
    "TERMSACCEPTED": "termsAccepted",
    "GOOGLEID": "googleId",
    "FACEBOOKID": "facebookId",
    "OPENIDID": "openidId",
    "SAMLID": "samlId",
    "LDAPID": "ldapId",
    "GITHUBID": "githubId",
    "DISCORDID": "discordId",
    "APPLEID": "appleId",
}
_STALE_RETRY_SECONDS = 5.0
# How long requests wait for the probe sent when the outage window ends: a MongoDB that is back answers
# in milliseconds, one still failing must not hold requests for the whole lookup timeout.
PROBE_WAIT_SECONDS = 0.25
_READINESS_CACHE_SECONDS = 2.0  # probes of several replicas and kubelets cost one query per two seconds
_PROJECTION = dict.fromkeys((*PLACEHOLDER_FIELDS.values(), *USER_FIELDS), 1)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    fields: Mapping[str, str]  # placeholder suffix -> value, e.g. {"EMAIL": ..., "ID": ...}
    team: str | None = None  # the LibreChat group chosen as the team, when teams are looked up
    tenant: str | None = None  # `tenantId` in a multi-tenant LibreChat
    team_unread: bool = False  # teams are looked up, and `groups` could not be read for this user yet
    groups: tuple[str, ...] = ()  # every group the user is in, when teams are looked up

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> User:
        fields = {"ID": str(document["_id"])}
        for suffix, name in PLACEHOLDER_FIELDS.items():
            value = document.get(name)
            if value is not None:
                fields[suffix] = field_text(value)
        return cls(id=fields["ID"], email=fields.get("EMAIL", ""), fields=fields, tenant=tenant_of(document))


def field_text(value: object) -> str:
    """A LibreChat user field as text: booleans as JSON spells them, anything else as `str` makes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LookupOutcome(enum.StrEnum):
    CACHE_HIT = "cache_hit"
    FOUND = "found"  # a cache miss answered by MongoDB
    NOT_FOUND = "not_found"
    STALE = "stale"  # MongoDB failed; an expired entry answered
    ERROR = "error"  # MongoDB failed in a way none of the others name
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"  # MongoDB answered but refused: credentials or access rights
    BACKOFF = "backoff"  # not asked: MongoDB failed moments ago (the outage window)


_FAILURE_OUTCOMES = {
    MongoFailure.UNREACHABLE: LookupOutcome.UNREACHABLE,
    MongoFailure.UNAUTHORIZED: LookupOutcome.UNAUTHORIZED,
    MongoFailure.TIMEOUT: LookupOutcome.TIMEOUT,
    MongoFailure.ERROR: LookupOutcome.ERROR,
}
_MONGO_FAILED = frozenset({*_FAILURE_OUTCOMES.values(), LookupOutcome.BACKOFF})


@dataclass(frozen=True, slots=True)
class Lookup:
    user: User | None
    outcome: LookupOutcome

    @property
    def mongo_failed(self) -> bool:
        return self.outcome in _MONGO_FAILED


class LookupObserver(Protocol):
    def lookup(self, outcome: LookupOutcome) -> None: ...

    def query_time(self, seconds: float) -> None: ...

    def mongodb_answered(self, answered: bool) -> None: ...

    def teams_answered(self, answered: bool) -> None: ...


class Unobserved:
    """An observer that notes nothing: the directory's default, and a base for one that notes a part."""

    def lookup(self, outcome: LookupOutcome) -> None:
        pass

    def query_time(self, seconds: float) -> None:
        pass

    def mongodb_answered(self, answered: bool) -> None:
        pass

    def teams_answered(self, answered: bool) -> None:
        pass


@dataclass(slots=True)
class _Entry:
    user: User | None
    fresh_until: float
    team_due: float = math.inf  # when to read the team again: before fresh_until if `groups` failed
    member: Mapping[str, Any] | None = None  # what the user's groups are found by, to read the team alone


class UserDirectory:
    def __init__(
        self,
        users: AsyncCollection[Any],
        *,
        ttl: float,
        unknown_ttl: float,
        timeout: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        observer: LookupObserver | None = None,
        teams: TeamFinder | None = None,
        probe_wait: float = PROBE_WAIT_SECONDS,
        one_shot: bool = False,
    ) -> None:
        """`one_shot`: a command asks once and ends (`check-user`), and reports a failure itself: no warning
        speaks of requests to come."""
        self._users = users
        self._ttl = ttl
        self._unknown_ttl = unknown_ttl
        self._timeout = timeout
        self._max_entries = max_entries
        self._clock = clock
        self._observer = observer or Unobserved()
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Lookup]] = {}
        self._window = OutageWindow(clock=clock)
        self._probe_wait = min(probe_wait, timeout)
        self._probe: asyncio.Task[Lookup] | None = None  # the query sent when the outage window ended
        self._probe_due = 0.0  # loop time until which requests wait for the probe
        self._warnings = RateLimitedWarnings()
        self._one_shot = one_shot
        self._teams_down_with_mongodb = False  # `teams_readable` was set to 0 because MongoDB itself failed
        self._readiness: tuple[float, MongoFailure | None] | None = None  # (checked at, result)
        self._deadline = QueryDeadline()  # the lookup timeout holds even when the driver is slow to cancel
        self._team_reads = (
            None
            if teams is None
            else TeamReads(
                teams,
                timeout=timeout,
                deadline=self._deadline,
                probe_wait=self._probe_wait,
                clock=clock,
                observer=self._observer,
                failure_of=self.failure_of,
                recorded=self._team_recorded,
            )
        )

    async def find(self, object_id: str) -> Lookup:
        lookup = await self._cached_or_queried(object_id)
        self._observer.lookup(lookup.outcome)
        return lookup

    async def _cached_or_queried(self, object_id: str) -> Lookup:
        if (cached := self._cached(object_id)) is not None:
            return cached
        admission = self._window.admit()
        if admission is Admission.SKIP and await self._probe_answered():
            if (cached := self._cached(object_id)) is not None:
                return cached  # the probe was for this very user
            admission = self._window.admit()
        if admission is Admission.SKIP:
            return self._fallback(object_id, LookupOutcome.BACKOFF)
        query = self._inflight.get(object_id) or self._start_query(object_id)
        if admission is Admission.PROBE:
            return await self._probe_with(query, object_id)
        # Shielded: a waiter that goes away must not cancel the query the others share.
        return await asyncio.shield(query)

    def _cached(self, object_id: str) -> Lookup | None:
        entry = self._cache.get(object_id)
        if entry is None or entry.fresh_until <= self._clock():
            return None
        self._read_team_if_due(object_id, entry)
        return Lookup(entry.user, LookupOutcome.CACHE_HIT if entry.user else LookupOutcome.NOT_FOUND)

    async def _probe_with(self, query: asyncio.Task[Lookup], object_id: str) -> Lookup:
        """The probe's own request waits a moment for it: a MongoDB that is back answers in milliseconds.

        Past that moment the request falls back, and the probe goes on without it: a MongoDB still
        failing costs one request a short wait, not the lookup timeout.
        """
        self._probe = query
        self._probe_due = asyncio.get_running_loop().time() + self._probe_wait
        await asyncio.wait((query,), timeout=self._probe_wait)  # never cancels the query
        return query.result() if query.done() else self._fallback(object_id, LookupOutcome.BACKOFF)

    async def _probe_answered(self) -> bool:
        """While a probe is out, requests that would skip wait for it as long as its own request does."""
        probe = self._probe
        if probe is None or probe.done():
            return False
        await asyncio.wait((probe,), timeout=max(0.0, self._probe_due - asyncio.get_running_loop().time()))
        return self._window.state is MongoState.AVAILABLE

    def _start_query(self, object_id: str) -> asyncio.Task[Lookup]:
        query = asyncio.create_task(self._query(object_id))
        self._inflight[object_id] = query
        query.add_done_callback(lambda _: self._inflight.pop(object_id, None))
        return query

    async def find_by_email(self, email: str) -> User | None:
        """For operators (`check-user`); the request path never queries by anything but `_id`."""
        query = self._users.find_one({"email": email.strip().lower()}, _PROJECTION)
        document = await self._deadline.run(query, self._timeout)
        return User.from_document(document) if document else None

    async def close(self) -> None:
        await self._users.database.client.close()

    @property
    def location(self) -> str:
        """`host:port/database`, for messages: never credentials."""
        return location(self._users.database.client, self._users.database.name)

    async def readiness(self) -> MongoFailure | None:
        """None when MongoDB answers an authorised read of `users` (a `ping` needs no credentials).

        Cached for a couple of seconds, so frequent probes stay cheap.
        """
        now = self._clock()
        if self._readiness is not None and now - self._readiness[0] < _READINESS_CACHE_SECONDS:
            return self._readiness[1]
        try:
            await self._deadline.run(self._users.find_one({}, {"_id": 1}), self._timeout)
        except Exception as exc:  # any failure to get a sound answer means lookups cannot succeed
            result: MongoFailure | None = self._failed(self.failure_of(exc)).kind
        else:
            result = None
            self._answered()
        self._readiness = (now, result)
        return result

    def failure_of(self, exc: BaseException) -> Failure:
        """What kind of MongoDB failure `exc` is, in words safe to show."""
        return classify(exc, self._users.database.client)

    def _answered(self) -> None:
        self._window.answered()
        self._observer.mongodb_answered(True)
        if self._teams_down_with_mongodb:  # groups live on the same MongoDB: readable again, until a read fails
            self._teams_down_with_mongodb = False
            self._observer.teams_answered(True)

    def _failed(self, failure: Failure) -> Failure:
        self._window.failed()
        self._observer.mongodb_answered(False)
        if self._team_reads is not None:  # LibreChat's groups are on the MongoDB that failed: unreadable too
            self._teams_down_with_mongodb = True
            self._observer.teams_answered(False)
        if self._one_shot:
            return failure  # the command says what failed, once, in its own words
        self._warnings.warn(
            f"mongodb-{failure.kind}",
            "MongoDB at %s: %s (%s); users not cached are attributed by UNRESOLVED_USER_POLICY, "
            "MongoDB is asked again in %.0f s; %s",
            self.location,
            _FAILURE_WORDS[failure.kind],
            failure.detail,
            self._window.seconds_left,
            advice(failure.kind),
        )
        return failure

    async def _query(self, object_id: str) -> Lookup:
        started = time.perf_counter()
        try:
            query = self._users.find_one({"_id": ObjectId(object_id)}, _PROJECTION)
            document = await self._deadline.run(query, self._timeout)
        except Exception as exc:  # PyMongoError above all, but a bad document must not fail the request
            failure = self._failed(self.failure_of(exc))
            return self._fallback(object_id, _FAILURE_OUTCOMES[failure.kind])
        finally:
            self._observer.query_time(time.perf_counter() - started)
        self._answered()
        if document is None:
            self._store(object_id, None, self._unknown_ttl)
            return Lookup(None, LookupOutcome.NOT_FOUND)
        user, team_due = await self._with_team(User.from_document(document), document, started)
        self._store(object_id, user, self._ttl, team_due, member_fields(document))
        return Lookup(user, LookupOutcome.FOUND)

    async def _with_team(self, user: User, document: Mapping[str, Any], started: float) -> tuple[User, float]:
        """The user with their team, and when to read the team again: one more query, waited for within the timeout.

        Groups that cannot be read leave the team out, never the user: the user keeps the team they
        had before (if any) and is cached for the full TTL; only the team is read again, later. A
        read that outlasts this request's timeout goes on and fills the cached team when it ends
        (`_team_recorded`); until then a cached hit finds it on its way and asks no more.
        """
        if self._team_reads is None:
            return user, math.inf
        seconds_left = self._timeout - (time.perf_counter() - started)
        read = await self._team_reads.read(user.id, member_fields(document), seconds_left)
        if read.read:
            return replace(user, team=read.team, groups=read.groups), math.inf
        entry = self._cache.get(user.id)
        if entry is not None and entry.user is not None:
            known = entry.user  # the team read before stands, read or not
            stale = replace(user, team=known.team, groups=known.groups, team_unread=known.team_unread)
            return stale, self._team_reads.retry_at()
        return replace(user, team=None, team_unread=True), self._team_reads.retry_at()

    def _read_team_if_due(self, object_id: str, entry: _Entry) -> None:
        if self._team_reads is not None and entry.member is not None and entry.team_due <= self._clock():
            self._team_reads.read_again(object_id, entry.member)

    def _team_recorded(self, object_id: str, read: TeamRead) -> None:
        entry = self._cache.get(object_id)
        if entry is None or entry.user is None or self._team_reads is None:
            return
        if read.read:
            entry.user = replace(entry.user, team=read.team, groups=read.groups, team_unread=False)
            entry.team_due = math.inf
        else:
            entry.team_due = self._team_reads.retry_at()

    def _fallback(self, object_id: str, failure: LookupOutcome) -> Lookup:
        entry = self._cache.get(object_id)
        if entry is not None and entry.user is not None:
            # Serve the stale entry for a short while without asking again, so an outage costs
            # each user one lookup timeout per retry interval instead of one per request.
            ttl = min(self._unknown_ttl, _STALE_RETRY_SECONDS)
            self._store(object_id, entry.user, ttl, entry.team_due, entry.member)
            return Lookup(entry.user, LookupOutcome.STALE)
        return Lookup(None, failure)

    def _store(
        self,
        object_id: str,
        user: User | None,
        ttl: float,
        team_due: float = math.inf,
        member: Mapping[str, Any] | None = None,
    ) -> None:
        # Re-inserting moves the key to the end, so the dict's order is oldest-written first.
        self._cache.pop(object_id, None)
        self._cache[object_id] = _Entry(user, self._clock() + ttl, team_due, member)
        while len(self._cache) > self._max_entries:
            del self._cache[next(iter(self._cache))]


_FAILURE_WORDS = {
    MongoFailure.UNREACHABLE: "unreachable",
    MongoFailure.UNAUTHORIZED: "refused the lookup (unauthorized)",
    MongoFailure.TIMEOUT: "no answer within USER_LOOKUP_TIMEOUT_SECONDS",
    MongoFailure.ERROR: "the lookup failed",
}


def connect_users(mongo_uri: str, timeout: float, **client_options: Any) -> AsyncCollection[Any]:
    """The `users` collection of the URI's database; nothing connects until the first query."""
    return librechat_database(mongo_client(mongo_uri, timeout, **client_options))["users"]
