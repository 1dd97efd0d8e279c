"""Each user's own limit for the period: their entry under `users`, else their groups' allowance, else `default`.

A team written with `each` gives every member an allowance of their own, beside or instead of the
team's shared pool; spend stays per user, so an allowance adds no key to the store. A person in
several groups with `each` gets the highest; a named user always wins, whatever their groups say.
Group names are matched ignoring case, as TEAM_GROUPS matches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .file import BudgetConfig
from .money import nanos


@dataclass(frozen=True, slots=True)
class UserLimit:
    nanos: int
    allowance_of: str | None = None  # the group whose `each` it is; None: the user's own entry, or `default`


class UserLimits:
    def __init__(self, config: BudgetConfig) -> None:
        self._named = {email: UserLimit(nanos(limit)) for email, limit in config.users.items()}
        self._default = UserLimit(nanos(config.default_user)) if config.default_user is not None else None
        self._each = {group.casefold(): UserLimit(nanos(each), group) for group, each in config.allowances.items()}

    @property
    def any(self) -> bool:
        """Whether any user can have a limit."""
        return bool(self._named or self._default is not None or self._each)

    def of(self, email: str, groups: Iterable[str] = ()) -> UserLimit | None:
        """`email` in lower case; `groups`: the names of every group the user is in."""
        named = self._named.get(email)
        if named is not None:
            return named
        if not self._each or not groups:
            return self._default
        allowances = [found for group in groups if (found := self._each.get(group.casefold())) is not None]
        if allowances:
            return max(allowances, key=lambda allowance: allowance.nanos)
        return self._default
