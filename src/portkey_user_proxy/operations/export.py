"""`export-users`: every LibreChat user as one CSV row, to join Portkey's older logs to people and teams.

Portkey's logs from before the proxy show LibreChat's ObjectIds as `_user`; this file maps each id to
the person and their team. Users stream from a cursor in batches, one row written at a time, so memory
does not grow with the number of users. Teams come from one pass over `groups` into a member → team
map: its size follows the groups' total membership (one entry per listed member; a group's name is
held once), and each user's team is then found without a query per user.

Spreadsheets run cells that begin with `=`, `+`, `-` or `@` as formulas, and names and usernames are
the users' own text: such cells get a leading `'`, which spreadsheets show as text (OWASP's advice).
`--raw` writes every value exactly as stored, for programs.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any, TextIO, TypeVar

from pymongo.asynchronous.database import AsyncDatabase

from ..attribution.directory import field_text
from ..attribution.teams import GROUPS_COLLECTION, USER_FIELDS, TeamChoice, TeamRank, member_key, tenant_of

HEADER = ("id", "email", "name", "username", "role", "provider", "team")
_USER_FIELDS = dict.fromkeys((*HEADER[1:-1], *USER_FIELDS), 1)
_GROUP_FIELDS = {"_id": 0, "name": 1, "memberIds": 1, "tenantId": 1}
_BATCH_SIZE = 1000
# A batch of up to 1000 users may take ten single-user lookups' time (USER_LOOKUP_TIMEOUT_SECONDS);
# a server that takes the read and never answers then ends the export instead of holding it forever.
BATCH_TIMEOUT_IN_LOOKUPS = 10
USERS_COLLECTION = "users"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_Key = TypeVar("_Key", str, tuple[str, str])


class TeamIndex:
    """Each member's best-ranked group, over all groups and per tenant, built from one pass over `groups`."""

    def __init__(self, choice: TeamChoice) -> None:
        self._choice = choice
        self._any_tenant: dict[str, TeamRank] = {}
        self._by_tenant: dict[tuple[str, str], TeamRank] = {}

    def add(self, group: Mapping[str, Any]) -> None:
        rank = self._choice.rank(group.get("name"))
        members = group.get("memberIds")
        if rank is None or not isinstance(members, list):
            return
        tenant = tenant_of(group)
        for member in members:
            if isinstance(member, str):
                _keep_best(self._any_tenant, member, rank)
                if tenant is not None:
                    _keep_best(self._by_tenant, (tenant, member), rank)

    def team_of(self, user: Mapping[str, Any]) -> str | None:
        """As `TeamFinder.team_of` would answer: a tenant's user counts only their own tenant's groups."""
        key = member_key(user)
        tenant = tenant_of(user)
        rank = self._any_tenant.get(key) if tenant is None else self._by_tenant.get((tenant, key))
        return rank[2] if rank is not None else None


def _keep_best(best: dict[_Key, TeamRank], key: _Key, rank: TeamRank) -> None:
    current = best.get(key)
    if current is None or rank < current:
        best[key] = rank


class UserExport:
    """`choice`: how teams are chosen, or None to leave the team column empty without reading `groups`."""

    def __init__(self, database: AsyncDatabase[Any], choice: TeamChoice | None, *, raw: bool = False) -> None:
        self._database = database
        self._choice = choice
        self._raw = raw
        self.rows = 0  # users written so far, for a message if the export stops half-way
        self.reading = GROUPS_COLLECTION if choice is not None else USERS_COLLECTION  # for a message if it fails

    async def write(self, out: TextIO) -> None:
        """The header, then one row per user in `_id` order; nothing is written if the first read fails."""
        teams = await self._team_index(self._choice) if self._choice is not None else None
        self.reading = USERS_COLLECTION
        cursor = self._database[USERS_COLLECTION].find({}, _USER_FIELDS, sort=[("_id", 1)], batch_size=_BATCH_SIZE)
        first = await anext(cursor, None)  # a refused read fails here, before the header is written
        writer = csv.writer(out)
        writer.writerow(HEADER)
        if first is None:
            return
        writer.writerow(self._row(first, teams))
        self.rows += 1
        async for user in cursor:
            writer.writerow(self._row(user, teams))
            self.rows += 1

    async def _team_index(self, choice: TeamChoice) -> TeamIndex:
        teams = TeamIndex(choice)
        async for group in self._database[GROUPS_COLLECTION].find({}, _GROUP_FIELDS, batch_size=_BATCH_SIZE):
            teams.add(group)
        return teams

    def _row(self, user: Mapping[str, Any], teams: TeamIndex | None) -> list[str]:
        team = teams.team_of(user) if teams is not None else None
        values = [str(user["_id"]), *(_text(user.get(name)) for name in HEADER[1:-1]), team or ""]
        return values if self._raw else [_inert(value) for value in values]


def _text(value: object) -> str:
    return "" if value is None else field_text(value)


def _inert(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
