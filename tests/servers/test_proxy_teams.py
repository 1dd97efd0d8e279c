"""End to end: the team (and tenant) key reaches Portkey as configured: for a resolved user the proxy's, the
team the budgets charge; for anyone else the request's own value, when it carries one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from bson import ObjectId
from hypothesis import example, given, settings
from hypothesis import strategies as st

from portkey_user_proxy.attribution.metadata import MAX_LENGTH, build_metadata
from portkey_user_proxy.settings import Settings, SettingsError, load_settings
from tests.support.fixtures import load_fixture
from tests.support.mongo import RealMongo, StandInMongo
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream

# Teams from LibreChat's groups: CI runs these on a real MongoDB too.
pytestmark = pytest.mark.real_mongo

EMAIL = "timmanik@email.com"
NOBODY = "aaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture
def librechat(mongo: StandInMongo | RealMongo, librechat_user: dict[str, Any]) -> StandInMongo | RealMongo:
    """The fixture user (local; in Finance and Engineering), a user in no group, and the fixture groups."""
    mongo.add_user({**librechat_user, "_id": ObjectId(NOBODY), "email": "nobody@email.com"})
    for group in load_fixture("librechat_groups.json"):
        mongo.add_group(group)
    return mongo


def send_fixture(proxy: RunningProxy, name: str, **changes: Any) -> httpx.Response:
    request = load_fixture(name)
    headers = {**request["headers"], **changes.get("headers", {})}
    body = {**request["body"], **changes.get("body", {})}
    return httpx.post(proxy.url + request["path"], headers=headers, json=body, timeout=10)


def _metadata_sent(make_proxy: MakeProxy, upstream: Upstream, metadata: str | None = None, **settings: Any) -> Any:
    proxy = make_proxy(**settings)
    headers = {} if metadata is None else {"x-portkey-metadata": metadata}
    response = send_fixture(proxy, "librechat_chat_request.json", headers=headers)
    assert response.status_code == 200
    return upstream.last.metadata


@pytest.mark.usefixtures("librechat")
def test_the_team_is_sent_under_the_configured_key(make_proxy: MakeProxy, upstream: Upstream) -> None:
    sent = _metadata_sent(make_proxy, upstream, team_metadata_key="team")

    assert sent == {"_environment": "production", "_user": EMAIL, "team": "Engineering"}


@pytest.mark.usefixtures("librechat")
def test_team_groups_choose_among_the_users_groups(make_proxy: MakeProxy, upstream: Upstream) -> None:
    sent = _metadata_sent(make_proxy, upstream, team_metadata_key="cost_center", team_groups="Sales, Finance")

    assert sent["cost_center"] == "Finance"


@pytest.mark.usefixtures("librechat")
def test_without_a_team_key_no_team_is_looked_up_or_sent(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy()
    send_fixture(proxy, "librechat_chat_request.json")

    assert upstream.last.metadata == {"_environment": "production", "_user": EMAIL}
    assert proxy.queries.by_collection == {"users": 1}


@pytest.mark.usefixtures("librechat")
def test_a_user_in_no_group_gets_no_team_key(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(team_metadata_key="team")
    send_fixture(proxy, "librechat_chat_request.json", body={"user": NOBODY})

    assert upstream.last.metadata == {"_environment": "production", "_user": "nobody@email.com"}


@pytest.mark.usefixtures("librechat")
def test_team_is_looked_up_once_per_cache_miss(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(team_metadata_key="team")
    for _ in range(5):
        send_fixture(proxy, "librechat_chat_request.json")

    assert {received.metadata["team"] for received in upstream.received} == {"Engineering"}
    assert proxy.queries.by_collection == {"users": 1, "groups": 1}


@pytest.mark.usefixtures("librechat")
@pytest.mark.parametrize(
    ("carried", "expected"),
    [
        ('{"team":"Platform"}', "Engineering"),  # a value from librechat.yaml, or a client's choice of team
        ('{"team":"{{LIBRECHAT_USER_ROLE}}"}', "Engineering"),  # a user placeholder the proxy would fill
        ('{"team":"{{LIBRECHAT_BODY_TEAM}}"}', "Engineering"),  # left unresolved by LibreChat
        ('{"team":"{{LIBRECHAT_USER_NOPE}}"}', "Engineering"),  # filled with nothing
        ('{"team":"  "}', "Engineering"),
    ],
)
def test_a_resolved_users_team_is_the_proxys_whatever_the_request_carries(
    make_proxy: MakeProxy, upstream: Upstream, carried: str, expected: str
) -> None:
    # The team Portkey reports is the team whose budget the answer is charged to.
    assert _metadata_sent(make_proxy, upstream, carried, team_metadata_key="team")["team"] == expected


@pytest.mark.usefixtures("librechat")
def test_a_user_not_resolved_keeps_the_requests_own_team(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(team_metadata_key="team")
    headers = {"x-portkey-metadata": '{"team":"Platform"}'}
    send_fixture(proxy, "librechat_chat_request.json", headers=headers, body={"user": "bbbbbbbbbbbbbbbbbbbbbbbb"})

    assert upstream.last.metadata == {"_user": "bbbbbbbbbbbbbbbbbbbbbbbb", "team": "Platform"}


@pytest.mark.usefixtures("librechat")
def test_an_unresolved_value_is_dropped_when_the_user_has_no_team(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(team_metadata_key="team")
    headers = {"x-portkey-metadata": '{"team":"{{LIBRECHAT_BODY_TEAM}}"}'}
    send_fixture(proxy, "librechat_chat_request.json", headers=headers, body={"user": NOBODY})

    assert upstream.last.metadata == {"_user": "nobody@email.com"}


def test_the_tenant_is_sent_under_its_key(
    make_proxy: MakeProxy, upstream: Upstream, mongo: StandInMongo | RealMongo, librechat_user: dict[str, Any]
) -> None:
    mongo.reset()
    mongo.add_user({**librechat_user, "tenantId": "corp"})

    sent = _metadata_sent(make_proxy, upstream, team_metadata_key="team", tenant_metadata_key="tenant")

    assert sent == {"_environment": "production", "_user": EMAIL, "tenant": "corp"}


@pytest.mark.parametrize(("tenant", "sent"), [("corp", {"tenant": "corp"}), (None, {})])
def test_a_known_users_tenant_is_the_proxys_whatever_the_request_carries(
    make_proxy: MakeProxy,
    upstream: Upstream,
    mongo: StandInMongo | RealMongo,
    librechat_user: dict[str, Any],
    tenant: str | None,
    sent: dict[str, str],
) -> None:
    mongo.reset()
    mongo.add_user({**librechat_user, "tenantId": tenant} if tenant else librechat_user)

    carried = '{"tenant":"other-tenant","team":"Platform"}'
    metadata = _metadata_sent(make_proxy, upstream, carried, team_metadata_key="team", tenant_metadata_key="tenant")

    assert metadata == {"_user": EMAIL, **sent}  # the fixture user is in no group here: no team either


@pytest.mark.parametrize(("tenant", "sent"), [("corp", {"tenant": "corp"}), (None, {})])
def test_a_found_user_without_an_email_still_gets_the_proxys_tenant(
    make_proxy: MakeProxy,
    upstream: Upstream,
    mongo: StandInMongo | RealMongo,
    librechat_user: dict[str, Any],
    tenant: str | None,
    sent: dict[str, str],
) -> None:
    # `_user` falls back to the id (no email to resolve to), but the record, tenant and all, is known.
    mongo.reset()
    without_email = {key: value for key, value in librechat_user.items() if key != "email"}
    mongo.add_user({**without_email, "tenantId": tenant} if tenant else without_email)

    carried = '{"tenant":"other-tenant","team":"Platform"}'
    metadata = _metadata_sent(make_proxy, upstream, carried, team_metadata_key="team", tenant_metadata_key="tenant")

    assert metadata == {"_user": str(librechat_user["_id"]), "team": "Platform", **sent}


def test_an_unknown_users_tenant_is_the_requests_own(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(tenant_metadata_key="tenant")
    headers = {"x-portkey-metadata": '{"tenant":"corp"}'}
    send_fixture(proxy, "librechat_chat_request.json", headers=headers, body={"user": NOBODY})

    assert upstream.last.metadata == {"_user": NOBODY, "tenant": "corp"}


@settings(max_examples=200, deadline=None)
@given(
    carried=st.one_of(st.none(), st.text(), st.sampled_from(["{{LIBRECHAT_BODY_X}}", "{{LIBRECHAT_USER_ROLE}}", " "])),
    team=st.one_of(st.none(), st.text(), st.text(min_size=120, max_size=300)),
)
@example(carried=" ", team=" ")
def test_the_team_key_always_holds_a_value_portkey_accepts(carried: str | None, team: str | None) -> None:
    incoming = None if carried is None else json.dumps({"team": carried})

    sent = json.loads(build_metadata(incoming, EMAIL, {"ROLE": "USER"}, {"team": team}).header)

    assert all(isinstance(value, str) and len(value) <= MAX_LENGTH for value in sent.values())
    if "team" in sent:
        assert sent["team"].strip()  # a team, or no key: never a blank one


def test_long_team_names_are_shortened_like_every_value() -> None:
    name = "Research and Development " * 8
    header = build_metadata(None, EMAIL, {}, {"team": name}).header

    team = json.loads(header)["team"]
    assert len(team) == MAX_LENGTH
    assert team.startswith("Research and Development")


# --- settings ---------------------------------------------------------------------------------


def _settings(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def test_team_groups_are_comma_separated_or_a_json_array() -> None:
    assert _settings(team_groups=" Finance , ,Engineering ").team_group_names == ("Finance", "Engineering")
    assert _settings(team_groups='["Sales, EMEA", "Finance"]').team_group_names == ("Sales, EMEA", "Finance")
    assert _settings(team_groups=" , ").team_groups is None
    assert _settings().team_group_names == ()


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"team_metadata_key": "_user"}, "TEAM_METADATA_KEY"),
        ({"team_metadata_key": "k" * (MAX_LENGTH + 1)}, "TEAM_METADATA_KEY"),
        ({"tenant_metadata_key": "tab\there"}, "TENANT_METADATA_KEY"),
        ({"team_metadata_key": "team", "tenant_metadata_key": "team"}, "TENANT_METADATA_KEY"),
        ({"team_groups": '["Finance", 3]'}, "TEAM_GROUPS"),
    ],
)
def test_invalid_team_settings_are_refused_naming_the_variable(values: dict[str, Any], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"invalid setting {variable}:"):
        _settings(**values)


def test_a_blank_team_key_leaves_teams_off() -> None:
    assert _settings(team_metadata_key="  ").team_metadata_key is None
