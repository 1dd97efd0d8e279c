from __future__ import annotations

import asyncio
import json
import logging

import pytest

from portkey_user_proxy.answers import refusal
from portkey_user_proxy.attribution.decision import (
    REASONS,
    UNIDENTIFIED,
    Attribution,
    AttributionOutcome,
    Attributor,
    UnresolvedUserPolicy,
    attribute,
)
from portkey_user_proxy.attribution.directory import Lookup, LookupOutcome, User
from portkey_user_proxy.attribution.identity import Identity, IdentitySource, identify
from portkey_user_proxy.attribution.teams import OwnedKeys

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"
TIM = User(USER_ID, EMAIL, {"ID": USER_ID, "EMAIL": EMAIL, "ROLE": "USER"})
NO_EMAIL = User(USER_ID, "", {"ID": USER_ID, "USERNAME": "timmanik"})
OPEN = UnresolvedUserPolicy.FAIL_OPEN
CLOSED = UnresolvedUserPolicy.FAIL_CLOSED


class FakeDirectory:
    """Answers every lookup with one prepared outcome and records which ids were asked about."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.asked: list[str] = []

    async def find(self, object_id: str) -> Lookup:
        self.asked.append(object_id)
        return self.lookup


def _attribute(identity: Identity, lookup: Lookup, policy: UnresolvedUserPolicy) -> tuple[Attribution, list[str]]:
    directory = FakeDirectory(lookup)
    attribution = asyncio.run(attribute(identity, directory, policy))  # type: ignore[arg-type]
    return attribution, directory.asked


def _from_body(user: object) -> Identity:
    return identify(None, user)


@pytest.mark.parametrize("policy", [OPEN, CLOSED])
@pytest.mark.parametrize("outcome", [LookupOutcome.FOUND, LookupOutcome.CACHE_HIT, LookupOutcome.STALE])
def test_known_user_is_resolved_to_their_email_under_either_policy(
    policy: UnresolvedUserPolicy, outcome: LookupOutcome
) -> None:
    attribution, asked = _attribute(_from_body(USER_ID), Lookup(TIM, outcome), policy)

    assert attribution.outcome is AttributionOutcome.RESOLVED
    assert attribution.user_value == EMAIL
    assert attribution.fields == TIM.fields
    assert attribution.reason == str(outcome)
    assert not attribution.rejected
    assert asked == [USER_ID]


def test_uppercase_id_is_looked_up_in_mongodb_form() -> None:
    attribution, asked = _attribute(identify(USER_ID.upper(), None), Lookup(TIM, LookupOutcome.FOUND), CLOSED)

    assert asked == [USER_ID]
    assert attribution.user_value == EMAIL


# --- fail-open --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lookup", "reason"),
    [
        (Lookup(None, LookupOutcome.NOT_FOUND), "not_found"),
        (Lookup(None, LookupOutcome.ERROR), "error"),
        (Lookup(None, LookupOutcome.TIMEOUT), "timeout"),
        (Lookup(NO_EMAIL, LookupOutcome.FOUND), "no_email"),
    ],
)
def test_fail_open_attributes_an_unresolved_user_to_the_raw_id(lookup: Lookup, reason: str) -> None:
    attribution, _ = _attribute(_from_body(USER_ID), lookup, OPEN)

    assert attribution.outcome is AttributionOutcome.FALLBACK
    assert attribution.user_value == USER_ID
    assert attribution.fields == {"ID": USER_ID}
    assert attribution.reason == reason
    assert not attribution.rejected
    # Whose budget the request counts against cannot be told when MongoDB failed: budgets need to know.
    assert attribution.directory_failed is (reason in {"error", "timeout"})


@pytest.mark.parametrize("claimed", ["alice", "ceo@corp.example", "\ud800", "x" * 300])
def test_fail_open_never_passes_on_a_value_that_is_not_an_object_id(claimed: str) -> None:
    attribution, asked = _attribute(identify(None, claimed), Lookup(TIM, LookupOutcome.FOUND), OPEN)

    assert asked == []
    assert attribution.outcome is AttributionOutcome.FALLBACK
    assert attribution.user_value == UNIDENTIFIED == "unidentified"
    assert attribution.fields == {}  # nor does it fill {{LIBRECHAT_USER_ID}}
    assert attribution.reason == "not_an_object_id"


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (identify(None, None), "no_identity"),
        # Told apart on dashboards: LibreChat left a placeholder unfilled, a configuration problem.
        (identify("{{LIBRECHAT_USER_ID}}", None), "placeholder"),
    ],
)
def test_fail_open_with_no_identity_is_unidentified(identity: Identity, reason: str) -> None:
    attribution, asked = _attribute(identity, Lookup(TIM, LookupOutcome.FOUND), OPEN)

    assert asked == []
    assert attribution.outcome is AttributionOutcome.FALLBACK
    assert attribution.user_value == UNIDENTIFIED
    assert attribution.fields == {}
    assert attribution.reason == reason
    assert attribution.reason in REASONS
    assert not attribution.rejected


# --- fail-closed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "lookup", "status", "reason"),
    [
        (Identity(None, IdentitySource.NONE), Lookup(TIM, LookupOutcome.FOUND), 403, "no_identity"),
        (Identity("alice", IdentitySource.HEADER), Lookup(TIM, LookupOutcome.FOUND), 403, "not_an_object_id"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.NOT_FOUND), 403, "not_found"),
        (_from_body(USER_ID), Lookup(NO_EMAIL, LookupOutcome.FOUND), 403, "no_email"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.ERROR), 503, "error"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.TIMEOUT), 503, "timeout"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.UNREACHABLE), 503, "unreachable"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.UNAUTHORIZED), 503, "unauthorized"),
        (_from_body(USER_ID), Lookup(None, LookupOutcome.BACKOFF), 503, "backoff"),
    ],
)
def test_fail_closed_refuses_unknown_users_with_403_and_mongodb_failures_with_503(
    identity: Identity, lookup: Lookup, status: int, reason: str
) -> None:
    attribution, _ = _attribute(identity, lookup, CLOSED)

    assert attribution.outcome is AttributionOutcome.REJECTED
    assert attribution.rejected
    assert refusal(attribution).status == status
    assert attribution.reason == reason
    assert attribution.user_value is None


def test_fail_closed_never_asks_mongodb_about_a_value_that_is_not_an_object_id() -> None:
    _, asked = _attribute(identify(None, "alice@example.com"), Lookup(TIM, LookupOutcome.FOUND), CLOSED)

    assert asked == []


def test_check_user_shows_the_metadata_a_request_would_send_with_its_own_keys_kept() -> None:
    # `check-user --metadata '{...}'`: what the proxy would send for a request carrying that header.
    directory = FakeDirectory(Lookup(TIM, LookupOutcome.FOUND))
    attributor = Attributor(directory, OPEN)  # type: ignore[arg-type]
    attribution = asyncio.run(attributor.attribute(identify(None, USER_ID)))

    shown = attributor.metadata('{"environment": "staging"}', attribution)

    assert json.loads(shown.header) == {"environment": "staging", "_user": EMAIL}


def test_metadata_the_proxy_had_to_mend_is_warned_about_once_in_words_an_admin_can_act_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = FakeDirectory(Lookup(TIM, LookupOutcome.FOUND))
    attributor = Attributor(directory, OPEN)  # type: ignore[arg-type]
    attribution = asyncio.run(attributor.attribute(identify(None, USER_ID)))

    with caplog.at_level(logging.WARNING, logger="portkey_user_proxy"):
        for _ in range(2):  # rate-limited: one line per kind of problem
            attributor.metadata_header("{not json", attribution)
            attributor.metadata_header('{"who": "{{LIBRECHAT_USER_EMAIL}}"}', attribution)

    assert [record.getMessage() for record in caplog.records] == [
        "x-portkey-metadata is not valid JSON; replaced",
        "LibreChat sent unresolved placeholders in x-portkey-metadata; filled them from the user record",
    ]


def test_fail_closed_set_on_the_attributor_refuses_a_user_mongodb_does_not_know() -> None:
    attributor = Attributor(FakeDirectory(Lookup(None, LookupOutcome.NOT_FOUND)), CLOSED)  # type: ignore[arg-type]

    assert asyncio.run(attributor.attribute(identify(None, USER_ID))).rejected


def test_for_a_user_not_resolved_the_requests_own_team_stands_and_an_unfilled_one_is_dropped() -> None:
    # TEAM_METADATA_KEY: only a resolved user's team is the proxy's; a literal `{{...}}` is no team.
    attributor = Attributor(
        FakeDirectory(Lookup(None, LookupOutcome.NOT_FOUND)),  # type: ignore[arg-type]
        OPEN,
        owned_keys=OwnedKeys(team_key="team"),
    )
    attribution = asyncio.run(attributor.attribute(identify(None, USER_ID)))

    kept = attributor.metadata('{"team": "Marketing"}', attribution)
    dropped = attributor.metadata('{"team": "{{LIBRECHAT_BODY_TEAM}}"}', attribution)

    assert json.loads(kept.header) == {"team": "Marketing", "_user": USER_ID}
    assert json.loads(dropped.header) == {"_user": USER_ID}


def test_a_resolved_user_whose_groups_could_not_be_read_is_known_to_have_an_unknown_team() -> None:
    # Budgets then cannot tell the team's spend: BUDGET_STORE_FAILURE decides, as for MongoDB failing.
    unread = User(USER_ID, EMAIL, TIM.fields, team_unread=True)
    attribution, _ = _attribute(_from_body(USER_ID), Lookup(unread, LookupOutcome.FOUND), OPEN)

    assert attribution.resolved
    assert attribution.team_unread is True
    assert attribution.team is None
