"""Teams: which of LibreChat's groups stands for a user's team in Portkey's cost reports.

LibreChat (0.8 and later) keeps groups in its `groups` collection as `{name, memberIds, source,
idOnTheSource, tenantId}`. A group lists a member by the user's `idOnTheSource` when the user has
one (Entra ID and OpenID users, whose groups LibreChat syncs), otherwise by the user's `_id` as 24
hex characters: LibreChat's own rule, so a user's groups here are the ones LibreChat grants
permissions by. In a multi-tenant LibreChat only groups of the user's own tenant count.

The team is the first group of `TEAM_GROUPS` the user is in (names compared ignoring case), or,
without `TEAM_GROUPS`, the alphabetically first of the user's groups. No group, no team: a team is
never invented.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pymongo.asynchronous.collection import AsyncCollection

GROUPS_COLLECTION = "groups"
# Names alone: a group's `memberIds` can list thousands of members and is never needed here.
_NAME_ONLY = {"_id": 0, "name": 1}
# What the user lookup adds to its projection so the team can be found from the same document.
USER_FIELDS = ("idOnTheSource", "tenantId")

TeamRank = tuple[int, str, str]
_MAX_GROUPS = 64


def member_key(user: Mapping[str, Any]) -> str:
    """How groups list this user: `idOnTheSource` when the user has one, else the `_id` in hex."""
    source_id = user.get("idOnTheSource")
    if isinstance(source_id, str) and source_id.strip():
        return source_id
    return str(user["_id"])


def tenant_of(user: Mapping[str, Any]) -> str | None:
    tenant = user.get("tenantId")
    return tenant if isinstance(tenant, str) and tenant.strip() else None


class TeamChoice:
    """The rule that picks one team among a user's groups."""

    def __init__(self, preferred: Sequence[str] = ()) -> None:
        self._position: dict[str, int] = {}
        for position, name in enumerate(preferred):
            self._position.setdefault(name.strip().casefold(), position)

    def rank(self, name: object) -> TeamRank | None:
        """Lower ranks win; None for a group that can never be the team (unlisted, nameless)."""
        if not isinstance(name, str) or not name.strip():
            return None
        name = name.strip()
        folded = name.casefold()
        if not self._position:
            return (0, folded, name)  # alphabetical, ignoring case; the exact spelling breaks ties
        position = self._position.get(folded)
        return None if position is None else (position, folded, name)

    def choose(self, names: Iterable[object]) -> str | None:
        ranked = [rank for rank in map(self.rank, names) if rank is not None]
        return min(ranked)[2] if ranked else None


class TeamFinder:
    """Reads one user's groups: one `find` on `groups` by member key, names only."""

    def __init__(self, groups: AsyncCollection[Any], choice: TeamChoice) -> None:
        self._groups = groups
        self._choice = choice

    async def team_of(self, user: Mapping[str, Any]) -> Membership:
        """The user's team and groups; raises whatever the driver raises (the caller bounds and absorbs it)."""
        query: dict[str, Any] = {"memberIds": member_key(user)}
        tenant = tenant_of(user)
        if tenant is not None:
            query["tenantId"] = tenant
        groups = await self._groups.find(query, _NAME_ONLY).to_list(None)
        names = [group.get("name") for group in groups]
        return Membership(self._choice.choose(names), group_names(names))


class Membership(NamedTuple):
    team: str | None  # the group chosen as the team (TEAM_GROUPS)
    groups: tuple[str, ...]  # every group the user is in, by name: what per-member allowances are found by


def group_names(names: Iterable[object]) -> tuple[str, ...]:
    """The usable names among a user's groups, at most `_MAX_GROUPS` of them (a user's memory is bounded)."""
    usable = sorted({name.strip() for name in names if isinstance(name, str) and name.strip()})
    return tuple(usable[:_MAX_GROUPS])


class OwnedValues(NamedTuple):
    """What the proxy puts under its keys: key -> the user's value, None when the user has none."""

    deferred: dict[str, str | None]  # a value the request carries itself wins, unless blank
    imposed: dict[str, str | None]  # the proxy's alone: whatever the request carried is replaced


@dataclass(frozen=True, slots=True)
class OwnedKeys:
    """The metadata keys the proxy fills from LibreChat's data (TEAM_METADATA_KEY, TENANT_METADATA_KEY).

    For a user the proxy resolved, both are the proxy's alone: the team is the one the budgets charge,
    so the team Portkey reports must be that one, and the tenant is where the user belongs; a client
    must move neither their cost nor their spend elsewhere. The tenant stays the proxy's for a user
    whose record was found without an email. For anyone else the request's own value stands (an admin
    may set one per endpoint in librechat.yaml), and the proxy's fills it only when it is missing.
    """

    team_key: str | None = None
    tenant_key: str | None = None

    def values(self, team: str | None, tenant: str | None, *, user_known: bool, resolved: bool = False) -> OwnedValues:
        owned = OwnedValues({}, {})
        if self.team_key is not None:
            (owned.imposed if resolved else owned.deferred)[self.team_key] = team
        if self.tenant_key is not None:
            (owned.imposed if user_known else owned.deferred)[self.tenant_key] = tenant
        return owned
