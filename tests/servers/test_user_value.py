"""Privacy mode: PORTKEY_USER_VALUE chooses what `_user` holds, and check-user maps it back."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pydantic import SecretStr

from portkey_user_proxy.attribution.directory import User
from portkey_user_proxy.attribution.metadata import MAX_LENGTH, portkey_length
from portkey_user_proxy.attribution.user_value import UserValue, email_hash, user_value_of
from portkey_user_proxy.operations.cli import main
from portkey_user_proxy.settings import SettingsError, load_settings
from tests.support.mongo import RealMongo, StandInMongo
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"
SECRET = "hash-secret-0123456789abcdef"
EXPECTED_HASH = hmac.new(SECRET.encode(), EMAIL.encode(), hashlib.sha256).hexdigest()

TIM = User(USER_ID, EMAIL, {"ID": USER_ID, "EMAIL": EMAIL, "USERNAME": "timmanik"})
NO_USERNAME = User(USER_ID, EMAIL, {"ID": USER_ID, "EMAIL": EMAIL})


@pytest.mark.parametrize(
    ("kind", "user", "value"),
    [
        (UserValue.EMAIL, TIM, EMAIL),
        (UserValue.USERNAME, TIM, f"timmanik ({USER_ID})"),
        (UserValue.USERNAME, NO_USERNAME, USER_ID),  # OAuth users may have none: the id still splits cost
        (UserValue.ID, TIM, USER_ID),
        (UserValue.EMAIL_HASH, TIM, EXPECTED_HASH),
    ],
)
def test_each_kind_of_value(kind: UserValue, user: User, value: str) -> None:
    assert user_value_of(kind, SecretStr(SECRET))(user) == value


OTHER_ID = "0123456789abcdef01234567"


def _named(username: str, object_id: str = OTHER_ID) -> User:
    return User(object_id, f"{object_id}@email.com", {"ID": object_id, "USERNAME": username})


@pytest.mark.parametrize(
    ("username", "someone_else"),
    [
        ("timmanik", f"timmanik ({USER_ID})"),  # the real `timmanik`'s value
        (USER_ID, f"timmanik ({USER_ID})"),  # another user's id: their value ...
        (USER_ID, USER_ID),  # ... and what a fallback for their id sends
        ("unidentified", "unidentified"),  # the marker of a request that named nobody
        (f"timmanik ({USER_ID})", f"timmanik ({USER_ID})"),  # a username spelled like another's value
    ],
)
def test_a_username_never_gives_two_people_one_value(username: str, someone_else: str) -> None:
    value = user_value_of(UserValue.USERNAME)(_named(username))

    assert value != someone_else
    assert value.endswith(f"({OTHER_ID})")


def test_a_username_shaped_like_an_email_is_not_sent() -> None:
    assert user_value_of(UserValue.USERNAME)(_named("ceo@corp.example")) == OTHER_ID


def test_a_long_username_is_shortened_but_keeps_the_id() -> None:
    values = {user_value_of(UserValue.USERNAME)(_named("x" * 200 + "🙂" * 10, f"{n:024x}")) for n in range(3)}

    assert len(values) == 3
    assert all(portkey_length(value) <= MAX_LENGTH and value.startswith("x" * 90) for value in values)
    assert {value[-26:] for value in values} == {f"({n:024x})" for n in range(3)}


def test_the_hash_is_keyed_stable_and_fits_portkeys_limit() -> None:
    key = SECRET.encode()
    digest = email_hash(key, EMAIL)

    assert len(digest) == 64 <= 128
    assert email_hash(key, " TimManik@Email.COM ") == digest  # one person, one value
    assert email_hash(b"another-secret-0123456789", EMAIL) != digest
    assert email_hash(key, "other@email.com") != digest
    assert EMAIL not in digest


def test_hashing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="USER_HASH_SECRET"):
        user_value_of(UserValue.EMAIL_HASH, None)
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, portkey_user_value="email-hash")
    assert "invalid setting USER_HASH_SECRET: must be set when PORTKEY_USER_VALUE is email-hash" in str(refused.value)


def test_a_short_secret_is_refused_without_being_shown() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, portkey_user_value="email-hash", user_hash_secret="tiny-secret")

    assert "USER_HASH_SECRET: must be at least 16 characters" in str(refused.value)
    assert "tiny-secret" not in str(refused.value)


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(SettingsError, match="PORTKEY_USER_VALUE: Input should be 'email', 'username', 'id' or"):
        load_settings(_env_file=None, portkey_user_value="name")


@pytest.mark.parametrize(
    ("settings", "value"),
    [
        ({}, EMAIL),
        ({"portkey_user_value": "username"}, f"timmanik ({USER_ID})"),
        ({"portkey_user_value": "id"}, USER_ID),
        ({"portkey_user_value": "email-hash", "user_hash_secret": SECRET}, EXPECTED_HASH),
    ],
)
def test_the_proxy_sends_the_chosen_value(
    make_proxy: MakeProxy, upstream: Upstream, settings: dict[str, str], value: str
) -> None:
    proxy = make_proxy(**settings)

    response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID, "messages": []}, timeout=10)

    assert response.status_code == 200
    assert upstream.last.metadata == {"_user": value}


def test_two_users_with_one_username_are_two_people_in_portkey(
    make_proxy: MakeProxy, upstream: Upstream, mongo: StandInMongo | RealMongo, librechat_user: dict[str, object]
) -> None:
    mongo.add_user({**librechat_user, "_id": ObjectId(OTHER_ID), "email": "other@email.com"})  # also `timmanik`
    proxy = make_proxy(portkey_user_value="username")

    sent = set()
    for user in (USER_ID, OTHER_ID):
        httpx.post(proxy.url + "/v1/chat/completions", json={"user": user, "messages": []}, timeout=10)
        sent.add(upstream.last.metadata["_user"])

    assert sent == {f"timmanik ({USER_ID})", f"timmanik ({OTHER_ID})"}


def test_in_hash_mode_no_email_leaves_the_proxy(
    make_proxy: MakeProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(portkey_user_value="email-hash", user_hash_secret=SECRET)
    caplog.set_level(logging.DEBUG, logger="portkey_user_proxy")

    httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"user": USER_ID, "messages": []},
        headers={"x-portkey-metadata": '{"team":"{{LIBRECHAT_USER_ROLE}}"}'},
        timeout=10,
    )

    metrics = httpx.get(proxy.url + "/metrics", timeout=10).text
    proxy.server.stop()  # access lines are written as requests end; stopping waits for that

    assert upstream.last.metadata == {"team": "USER", "_user": EXPECTED_HASH}
    assert all(EMAIL not in value for _, value in upstream.last.header_list)
    assert EMAIL not in upstream.last.body.decode()
    assert EMAIL not in metrics
    assert EMAIL not in caplog.text
    assert f"user={EXPECTED_HASH}" in caplog.text  # the access line names the value sent


def test_fallbacks_stay_the_raw_id(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(portkey_user_value="email-hash", user_hash_secret=SECRET)

    httpx.post(proxy.url + "/v1/chat/completions", json={"user": "ffffffffffffffffffffffff"}, timeout=10)

    assert upstream.last.metadata == {"_user": "ffffffffffffffffffffffff"}


@pytest.fixture
def hashing_env(monkeypatch: pytest.MonkeyPatch, mongo: StandInMongo | RealMongo, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", mongo.uri)
    monkeypatch.setenv("PORTKEY_USER_VALUE", "email-hash")
    monkeypatch.setenv("USER_HASH_SECRET", SECRET)


@pytest.mark.usefixtures("hashing_env", "restore_logging")
@pytest.mark.parametrize("who", [USER_ID, EMAIL])
def test_check_user_prints_the_email_and_the_value_sent(who: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-user", who]) == 0

    output = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in output.splitlines())
    assert lines["email"].strip() == EMAIL
    assert lines["_user sent"].strip() == f"{EXPECTED_HASH} (PORTKEY_USER_VALUE=email-hash)"
    assert json.loads(lines["x-portkey-metadata"]) == {"_user": EXPECTED_HASH}
