"""Attribution: a request's identity turned into the person Portkey is told about, or a refusal.

The `Attributor` looks the identity up, applies UNRESOLVED_USER_POLICY, and writes the metadata header
value the upstream request will carry. A rejected attribution becomes the client's answer in
`answers.refusal`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..observability.logs import RateLimitedWarnings
from .directory import LookupOutcome, UserDirectory
from .identity import Identity
from .metadata import BuiltHeaders, Metadata, build_metadata
from .teams import OwnedKeys
from .user_value import UserValueOf, email_of

# `_user` for a request whose claimed user is no ObjectId (or who named nobody), under fail-open: a raw
# value such as `ceo@corp.example` must never pass for a resolved person in Portkey's Users view.
UNIDENTIFIED = "unidentified"


class UnresolvedUserPolicy(enum.StrEnum):
    """What to do when a request's user cannot be turned into an email."""

    FAIL_OPEN = "fail-open"  # forward anyway, `_user` = the raw id (cost still splits per user)
    FAIL_CLOSED = "fail-closed"  # refuse: user_not_identified, or user_lookup_unavailable when MongoDB fails


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
    # MongoDB could not answer (not: nobody was found): who this is, and so their budgets, is unknown.
    directory_failed: bool = False
    team: str | None = None  # for TEAM_METADATA_KEY, when the user was resolved
    tenant: str | None = None  # for TENANT_METADATA_KEY, when the user's record was found
    user_known: bool = False  # the user's record was found, whether or not it resolved (no email: a fallback)
    email: str | None = None  # the resolved user's, whatever `_user` holds: what user budgets are keyed by
    team_unread: bool = False  # the user's groups could not be read: their team, and its budget, is unknown
    groups: tuple[str, ...] = ()  # the resolved user's groups, for per-member allowances

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
        return _unresolved(identity, reason, policy)
    object_id = identity.object_id
    if object_id is None:
        return _unresolved(identity, "not_an_object_id", policy)
    lookup = await directory.find(object_id)
    if lookup.user is not None and lookup.user.email:
        user = lookup.user
        resolved = AttributionOutcome.RESOLVED
        value = user_value(user)
        return Attribution(
            resolved,
            value,
            lookup.outcome,
            user.fields,
            team=user.team,
            tenant=user.tenant,
            email=user.email,
            user_known=True,
            team_unread=user.team_unread,
            groups=user.groups,
        )
    if lookup.user is not None:
        # `_user` falls back (no email to resolve to), yet the record is known: so is the user's tenant.
        unresolved = _unresolved(identity, "no_email", policy)
        return replace(unresolved, tenant=lookup.user.tenant, user_known=True)
    return _unresolved(identity, str(lookup.outcome), policy, directory_failed=lookup.mongo_failed)


def _unresolved(
    identity: Identity, reason: str, policy: UnresolvedUserPolicy, *, directory_failed: bool = False
) -> Attribution:
    if policy is UnresolvedUserPolicy.FAIL_CLOSED:
        return Attribution(AttributionOutcome.REJECTED, None, reason, directory_failed=directory_failed)
    # An ObjectId in its canonical lowercase form, so one user never shows under two spellings; any
    # other value could be anyone's (an email, a name), so it is never passed on.
    object_id = identity.object_id
    if object_id is None:
        return Attribution(AttributionOutcome.FALLBACK, UNIDENTIFIED, reason, directory_failed=directory_failed)
    return Attribution(
        AttributionOutcome.FALLBACK, object_id, reason, {"ID": object_id}, directory_failed=directory_failed
    )


@dataclass(frozen=True, slots=True)
class Attributor:
    """Everything attribution needs, built once at start-up (see `app.build_forwarder`)."""

    directory: UserDirectory
    policy: UnresolvedUserPolicy
    user_value: UserValueOf = email_of
    owned_keys: OwnedKeys = field(default_factory=OwnedKeys)
    _warnings: RateLimitedWarnings = field(default_factory=RateLimitedWarnings)
    _built: BuiltHeaders = field(default_factory=BuiltHeaders)

    async def attribute(self, identity: Identity) -> Attribution:
        return await attribute(identity, self.directory, self.policy, self.user_value)

    def metadata_header(self, incoming: str | None, attribution: Attribution) -> bytes:
        """The `x-portkey-metadata` value to send: the request's own, with `_user` and the owned keys set."""
        metadata, encoded = self._built_metadata(incoming, attribution)
        if metadata.problem:
            self._warnings.warn("metadata", "%s", metadata.problem)
        if metadata.placeholders_filled:
            self._warnings.warn(
                "metadata-placeholder",
                "LibreChat sent unresolved placeholders in x-portkey-metadata; filled them from the user record",
            )
        return encoded

    def metadata(self, incoming: str | None, attribution: Attribution) -> Metadata:
        """What `metadata_header` sends, without its warnings about the request: what `check-user` shows."""
        return self._built_metadata(incoming, attribution)[0]

    def _built_metadata(self, incoming: str | None, attribution: Attribution) -> tuple[Metadata, bytes]:
        resolved = attribution.resolved
        key = (incoming, attribution.user_value, attribution.team, attribution.tenant, attribution.user_known, resolved)
        if (built := self._built.get(key)) is not None:
            return built
        owned = self.owned_keys.values(
            attribution.team, attribution.tenant, user_known=attribution.user_known, resolved=resolved
        )
        fields = attribution.fields
        metadata = build_metadata(incoming, attribution.user_value, fields, owned.deferred, owned.imposed)
        return metadata, self._built.keep(key, metadata)
