"""Turning a request's identity into the value Portkey attributes it to, under the fallback policy."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..settings import UnresolvedUserPolicy
from .directory import LookupOutcome, UserDirectory
from .identity import Identity
from .user_value import UserValueOf, email_of

# `_user` for a request whose claimed user is no ObjectId (or who named nobody), under fail-open: a raw
# value such as `ceo@corp.example` must never pass for a resolved person in Portkey's Users view.
UNIDENTIFIED = "unidentified"


class AttributionOutcome(enum.StrEnum):
    RESOLVED = "resolved"  # `_user` is the user's email, or what PORTKEY_USER_VALUE puts in its place
    FALLBACK = "fallback"  # `_user` is the ObjectId as sent, or UNIDENTIFIED
    REJECTED = "rejected"  # refused under the fail-closed policy


# Every reason an attribution can give (the `reason` label of attributions_total): a bounded set.
REASONS = frozenset({"no_identity", "placeholder", "not_an_object_id", "no_email", *(str(o) for o in LookupOutcome)})


@dataclass(frozen=True, slots=True)
class Attribution:
    outcome: AttributionOutcome
    user_value: str | None  # what `_user` is set to
    reason: str  # one of REASONS: the lookup outcome, or why there was no lookup
    fields: Mapping[str, str] = field(default_factory=dict)
    status: int = 200  # the refusal status when rejected
    team: str | None = None  # for TEAM_METADATA_KEY, when the user was resolved
    tenant: str | None = None  # for TENANT_METADATA_KEY, likewise

    @property
    def resolved(self) -> bool:
        return self.outcome is AttributionOutcome.RESOLVED

    @property
    def rejected(self) -> bool:
        return self.outcome is AttributionOutcome.REJECTED


async def attribute(
    identity: Identity, directory: UserDirectory, policy: UnresolvedUserPolicy, user_value: UserValueOf = email_of
) -> Attribution:
    if identity.raw is None:
        # A placeholder LibreChat left unfilled is a configuration problem, not a request without a user.
        reason = "placeholder" if identity.unresolved_placeholder else "no_identity"
        return _unresolved(identity, reason, policy, status=403)
    object_id = identity.object_id
    if object_id is None:
        return _unresolved(identity, "not_an_object_id", policy, status=403)
    lookup = await directory.find(object_id)
    if lookup.user is not None and lookup.user.email:
        user = lookup.user
        resolved = AttributionOutcome.RESOLVED
        return Attribution(resolved, user_value(user), lookup.outcome, user.fields, team=user.team, tenant=user.tenant)
    if lookup.user is not None:
        return _unresolved(identity, "no_email", policy, status=403)
    status = 503 if lookup.mongo_failed else 403
    return _unresolved(identity, str(lookup.outcome), policy, status=status)


def _unresolved(identity: Identity, reason: str, policy: UnresolvedUserPolicy, *, status: int) -> Attribution:
    if policy is UnresolvedUserPolicy.FAIL_CLOSED:
        return Attribution(AttributionOutcome.REJECTED, None, reason, status=status)
    # An ObjectId in its canonical lowercase form, so one user never shows under two spellings; any
    # other value could be anyone's (an email, a name), so it is never passed on.
    object_id = identity.object_id
    if object_id is None:
        return Attribution(AttributionOutcome.FALLBACK, UNIDENTIFIED, reason)
    return Attribution(AttributionOutcome.FALLBACK, object_id, reason, {"ID": object_id})
