"""Reading users' teams from LibreChat's `groups`, with an outage window of its own.

A team is read together with its user (one more query per cache miss). Each read has the whole
lookup timeout of its own; the request waits for it only as long as its own lookup timeout lasts.
A read that merely outlasts the request goes on in the background and its team is cached for the
next request: a slow but healthy MongoDB is no failure. When `groups` fails, or does not answer
within a read's own timeout, while `users` answers, the user is still resolved and cached for the
full TTL; only the team is left out (the user keeps the team they had before, if any) and read again
later. Failed reads open the same kind of outage window as failed user lookups (`outage.py`): inside
it no request asks `groups`; when it ends one read probes, and a request waits a moment for it at
most. A cached user whose team is due is answered at once, and their team is read again in the
background.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..mongodb.failures import Failure, advice
from ..observability.logs import RateLimitedWarnings
from .outage import Admission, OutageWindow
from .query_deadline import QueryDeadline
from .teams import USER_FIELDS, TeamFinder


@dataclass(frozen=True, slots=True)
class TeamRead:
    read: bool  # False: `groups` could not be read, or not within the request's time (then read on)
    team: str | None = None
    groups: tuple[str, ...] = ()  # every group the user is in


UNREAD = TeamRead(read=False)


class TeamsObserver(Protocol):
    def teams_answered(self, answered: bool) -> None: ...


def member_fields(user: Mapping[str, Any]) -> dict[str, Any]:
    """What a user's groups are found by, kept with a cached user so their team can be read again alone."""
    return {key: user[key] for key in ("_id", *USER_FIELDS) if key in user}


class TeamReads:
    def __init__(
        self,
        finder: TeamFinder,
        *,
        timeout: float,
        deadline: QueryDeadline,
        probe_wait: float,
        clock: Callable[[], float],
        observer: TeamsObserver,
        failure_of: Callable[[BaseException], Failure],
        recorded: Callable[[str, TeamRead], None],
    ) -> None:
        self._finder = finder
        self._timeout = timeout  # each read's own: a read is a failure only past it
        self._deadline = deadline
        self._probe_wait = probe_wait
        self._clock = clock
        self._observer = observer
        self._failure_of = failure_of
        self._recorded = recorded  # told each read's result, whoever waited for it
        self._window = OutageWindow(clock=clock)
        self._reads: dict[str, asyncio.Task[TeamRead]] = {}
        self._warnings = RateLimitedWarnings()

    async def read(self, user_id: str, member: Mapping[str, Any], seconds: float) -> TeamRead:
        """The team of a user just read from `users`, if `groups` answers within the request's time.

        The request's time: `seconds` (what is left of its lookup timeout), or a moment only when
        this read is the probe after `groups` failed. Past it the read goes on without the request,
        within its own timeout, and records its result. Inside the outage window `groups` is not asked.
        """
        admission = self._window.admit()
        if admission is Admission.SKIP:
            return UNREAD
        read = self._reads.get(user_id) or self._start(user_id, member)
        wait = seconds if admission is Admission.QUERY else min(self._probe_wait, seconds)
        await asyncio.wait((read,), timeout=max(wait, 0.0))  # never cancels the read: it records its result
        return read.result() if read.done() else UNREAD

    def read_again(self, user_id: str, member: Mapping[str, Any]) -> None:
        """Read a cached user's team in the background, unless one is on its way or `groups` is resting."""
        if user_id not in self._reads and self._window.admit() is not Admission.SKIP:
            self._start(user_id, member)

    def retry_at(self) -> float:
        """When a team that could not be read is worth reading again: once the outage window ends."""
        return self._clock() + self._window.seconds_left

    def _start(self, user_id: str, member: Mapping[str, Any]) -> asyncio.Task[TeamRead]:
        read = asyncio.create_task(self._read(member))
        self._reads[user_id] = read
        read.add_done_callback(lambda done: self._ended(user_id, done))
        return read

    def _ended(self, user_id: str, read: asyncio.Task[TeamRead]) -> None:
        self._reads.pop(user_id, None)
        if not read.cancelled():
            self._recorded(user_id, read.result())

    async def _read(self, member: Mapping[str, Any]) -> TeamRead:
        try:
            membership = await self._deadline.run(self._finder.team_of(member), self._timeout)
        except Exception as exc:  # TimeoutError, PyMongoError, a malformed group: all only cost the team
            self._failed(self._failure_of(exc))
            return UNREAD
        self._window.answered()
        self._observer.teams_answered(True)
        return TeamRead(read=True, team=membership.team, groups=membership.groups)

    def _failed(self, failure: Failure) -> None:
        # Not an outage of the user lookup (`users` answered): only teams rest.
        self._window.failed()
        self._observer.teams_answered(False)
        self._warnings.warn(
            f"groups-{failure.kind}",
            "reading LibreChat's groups failed: %s (%s); teams are left out (cached users keep their last "
            "team) and groups are asked again in %.0f s; %s",
            failure.kind,
            failure.detail,
            self._window.seconds_left,
            advice(failure.kind),
        )
