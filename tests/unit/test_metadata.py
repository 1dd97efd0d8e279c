from __future__ import annotations

import json
from typing import Any

import pytest
from bson import json_util
from hypothesis import given, settings
from hypothesis import strategies as st

from portkey_user_proxy.attribution.directory import User
from portkey_user_proxy.attribution.metadata import MAX_LENGTH, BuiltHeaders, build_metadata, portkey_length, shorten
from tests.support.fixtures import FIXTURES

EMAIL = "timmanik@email.com"
USER_ID = "6651f0c2a1b2c3d4e5f60718"
FIELDS = {"ID": USER_ID, "EMAIL": EMAIL, "NAME": "Tim Manik", "ROLE": "ADMIN"}


def _fixture(name: str) -> Any:
    return json_util.loads((FIXTURES / name).read_text())


def _sent(incoming: str | None, user_value: str | None, fields: dict[str, str] | None = None) -> dict[str, Any]:
    header = build_metadata(incoming, user_value, FIELDS if fields is None else fields).header
    sent: dict[str, Any] = json.loads(header)
    return sent


# --- properties -------------------------------------------------------------------------------

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)),
    max_leaves=12,
)
# Values that mention placeholders often, so filling is exercised alongside everything else.
_PLACEHOLDERISH = st.sampled_from(
    ["{{LIBRECHAT_USER_EMAIL}}", "{{LIBRECHAT_USER_ROLE}}", "${USER_EMAIL}", "{{LIBRECHAT_USER_NOPE}}", "x" * 200]
)
_ADMIN_OBJECTS = st.dictionaries(st.text(), st.one_of(_JSON_VALUES, _PLACEHOLDERISH), max_size=8)
_ANY_TEXT = st.one_of(st.none(), st.text(), _ADMIN_OBJECTS.map(json.dumps), _JSON_VALUES.map(json.dumps))
_USER_VALUES = st.one_of(st.none(), st.text(), st.emails(), st.text(min_size=120, max_size=300))
_FIELDS = st.dictionaries(st.sampled_from(["ID", "EMAIL", "NAME", "ROLE", "USERNAME"]), st.text(), max_size=5)
PROPERTY = settings(max_examples=200, deadline=None)


def _assert_portkey_accepts(header: str) -> dict[str, Any]:
    assert header.isascii()
    sent = json.loads(header)
    assert isinstance(sent, dict)
    for key, value in sent.items():
        assert isinstance(key, str) and portkey_length(key) <= MAX_LENGTH
        assert isinstance(value, str) and portkey_length(value) <= MAX_LENGTH
    return sent


@PROPERTY
@given(incoming=_ANY_TEXT, user_value=_USER_VALUES, fields=_FIELDS)
def test_any_incoming_text_gives_a_json_object_of_short_strings(
    incoming: str | None, user_value: str | None, fields: dict[str, str]
) -> None:
    sent = _assert_portkey_accepts(build_metadata(incoming, user_value, fields).header)

    if user_value is None:
        assert "_user" not in sent
    else:
        assert sent["_user"] == shorten(user_value)


@PROPERTY
@given(admin=_ADMIN_OBJECTS, spoofed=_JSON_VALUES, user_value=_USER_VALUES, fields=_FIELDS)
def test_user_is_always_the_resolved_value_and_admin_keys_are_kept(
    admin: dict[str, Any], spoofed: Any, user_value: str | None, fields: dict[str, str]
) -> None:
    incoming = json.dumps({**admin, "_user": spoofed})

    sent = _assert_portkey_accepts(build_metadata(incoming, user_value, fields).header)

    if user_value is None:
        assert "_user" not in sent
    else:
        assert sent["_user"] == shorten(user_value)
    kept = {shorten(key) for key in admin if key != "_user"}
    assert set(sent) - {"_user"} == kept
    for key, value in admin.items():
        plain = isinstance(value, str) and "{" not in value and portkey_length(value) <= MAX_LENGTH
        if key != "_user" and portkey_length(key) <= MAX_LENGTH and plain:
            assert sent[key] == value


@PROPERTY
@given(first=st.text(min_size=MAX_LENGTH + 1), second=st.text(min_size=MAX_LENGTH + 1))
def test_distinct_long_values_stay_distinct(first: str, second: str) -> None:
    if first != second:
        assert shorten(first) != shorten(second)
    # A character beyond U+FFFF is two units: a prefix never cuts one in half, so it may end a unit short.
    assert MAX_LENGTH - 1 <= portkey_length(shorten(first)) <= MAX_LENGTH


@PROPERTY
@given(value=st.text(max_size=MAX_LENGTH))
def test_values_that_fit_are_unchanged(value: str) -> None:
    if portkey_length(value) <= MAX_LENGTH:
        assert shorten(value) == value


def test_characters_beyond_the_basic_plane_count_twice_as_in_javascript() -> None:
    team = "\U0001f680" * 100  # 100 characters, 200 UTF-16 code units: too long for Portkey

    shortened = shorten(team)

    assert portkey_length(shortened) == MAX_LENGTH - 1  # 55 rockets (110 units), "~", 16 hex digits
    assert shortened.startswith("\U0001f680" * 55 + "~")
    assert shorten("\U0001f680" * 64) == "\U0001f680" * 64  # exactly 128 units: unchanged


# --- placeholders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "filled"),
    [
        ("{{LIBRECHAT_USER_EMAIL}}", EMAIL),
        ("{{LIBRECHAT_USER_ROLE}}", "ADMIN"),
        ("{{ LIBRECHAT_USER_EMAIL }}", EMAIL),
        ("${USER_EMAIL}", EMAIL),
        ("${USER_ID}", USER_ID),
        ("{{LIBRECHAT_USER_NAME}} <{{LIBRECHAT_USER_EMAIL}}>", f"Tim Manik <{EMAIL}>"),
        ("team-{{LIBRECHAT_USER_ROLE}}", "team-ADMIN"),
        ("{{LIBRECHAT_USER_FAVOURITECOLOUR}}", ""),
        ("{{LIBRECHAT_USER_PROVIDER}}", ""),  # a field this user's record lacks
    ],
)
def test_placeholders_in_values_are_filled_from_the_user_record(value: str, filled: str) -> None:
    metadata = build_metadata(json.dumps({"who": value}), EMAIL, FIELDS)

    assert json.loads(metadata.header) == {"who": filled, "_user": EMAIL}
    assert metadata.placeholders_filled
    assert metadata.problem is None


def test_values_without_placeholders_are_not_reported_as_filled() -> None:
    metadata = build_metadata('{"_environment":"production"}', EMAIL, FIELDS)

    assert json.loads(metadata.header) == {"_environment": "production", "_user": EMAIL}
    assert not metadata.placeholders_filled


def test_leaked_placeholders_from_librechat_are_filled_and_user_overridden() -> None:
    request = _fixture("librechat_placeholder_leak.json")
    user = User.from_document(_fixture("librechat_user.json"))

    metadata = build_metadata(request["headers"]["x-portkey-metadata"], user.email, user.fields)

    assert json.loads(metadata.header) == {"team": "USER", "_user": "timmanik@email.com"}
    assert metadata.placeholders_filled


def test_leaked_placeholders_with_an_unresolved_user_become_empty_and_user_is_the_raw_id() -> None:
    request = _fixture("librechat_placeholder_leak.json")

    sent = _sent(request["headers"]["x-portkey-metadata"], USER_ID, {"ID": USER_ID})

    assert sent == {"team": "", "_user": USER_ID}


def test_admin_metadata_from_librechat_is_kept() -> None:
    request = _fixture("librechat_chat_request.json")

    assert _sent(request["headers"]["x-portkey-metadata"], EMAIL) == {"_environment": "production", "_user": EMAIL}


# --- user and invalid input -------------------------------------------------------------------


@pytest.mark.parametrize("spoofed", ['"ceo@example.com"', "null", "42", '{"a":1}', '"{{LIBRECHAT_USER_EMAIL}}"'])
def test_spoofed_user_is_overridden(spoofed: str) -> None:
    assert _sent(f'{{"_user":{spoofed},"team":"a"}}', EMAIL) == {"team": "a", "_user": EMAIL}


def test_spoofed_user_is_dropped_when_nobody_was_identified() -> None:
    assert _sent('{"_user":"ceo@example.com","team":"a"}', None) == {"team": "a"}


@pytest.mark.parametrize("incoming", [None, "", "   "])
def test_absent_metadata_starts_from_empty_without_a_problem(incoming: str | None) -> None:
    metadata = build_metadata(incoming, EMAIL, FIELDS)

    assert json.loads(metadata.header) == {"_user": EMAIL}
    assert metadata.problem is None


@pytest.mark.parametrize(
    "incoming",
    ["not json", "{", "{'single': 'quotes'}", '{"a":1}{"b":2}', "[1, 2]", '"text"', "42", "null", "true", "[" * 99_999],
)
def test_invalid_or_non_object_metadata_is_replaced_and_reported(incoming: str) -> None:
    metadata = build_metadata(incoming, EMAIL, FIELDS)

    assert json.loads(metadata.header) == {"_user": EMAIL}
    assert metadata.problem in {
        "x-portkey-metadata is not valid JSON; replaced",
        "x-portkey-metadata is not a JSON object; replaced",
    }
    assert ("object" in metadata.problem) is (incoming in {"[1, 2]", '"text"', "42", "null", "true"})


# --- lengths and spelling ---------------------------------------------------------------------


def test_a_140_character_email_is_shortened_to_128_characters_readably() -> None:
    email = "a" * 128 + "@example.com"
    assert len(email) == 140

    sent = _sent(None, email)

    assert len(sent["_user"]) == MAX_LENGTH
    assert sent["_user"].startswith("a" * 100)


def test_long_emails_differing_only_at_the_end_stay_distinct() -> None:
    first = "a" * 128 + "@example.com"
    second = "a" * 128 + "@example.org"

    assert _sent(None, first)["_user"] != _sent(None, second)["_user"]


def test_shortening_is_stable_so_one_user_keeps_one_value() -> None:
    email = "b" * 200 + "@example.com"

    assert _sent(None, email)["_user"] == _sent('{"x":"y"}', email)["_user"]


def test_long_admin_keys_and_values_are_shortened() -> None:
    sent = _sent(json.dumps({"k" * 300: "v" * 300}), EMAIL)

    assert sent == {shorten("k" * 300): shorten("v" * 300), "_user": EMAIL}
    assert all(len(text) == MAX_LENGTH for text in (shorten("k" * 300), shorten("v" * 300)))


def test_value_filled_beyond_the_limit_is_shortened() -> None:
    long_email = "c" * 150 + "@example.com"

    sent = _sent('{"email":"{{LIBRECHAT_USER_EMAIL}}"}', long_email, {"EMAIL": long_email})

    assert sent["email"] == shorten(long_email) == sent["_user"]


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        ("1", "1"),
        ("1.5", "1.5"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ('[1, "a"]', '[1,"a"]'),
        ('{"k": {"n": 2}}', '{"k":{"n":2}}'),
    ],
)
def test_non_string_values_become_their_json_spelling(value: str, spelled: str) -> None:
    assert _sent(f'{{"v": {value}}}', EMAIL)["v"] == spelled


def test_non_ascii_text_is_sent_escaped_and_arrives_intact() -> None:
    metadata = build_metadata('{"team":"Équipe Zürich 東京"}', "josé@exämple.com", FIELDS)

    assert metadata.header.isascii()
    assert json.loads(metadata.header) == {"team": "Équipe Zürich 東京", "_user": "josé@exämple.com"}


def test_lone_surrogates_in_incoming_json_do_not_break_the_header() -> None:
    metadata = build_metadata('{"a":"\\ud800", "\\udfff":"b"}', EMAIL, FIELDS)

    assert metadata.header.isascii()
    assert json.loads(metadata.header) == {"a": "\ud800", "\udfff": "b", "_user": EMAIL}


def test_header_is_compact_json() -> None:
    header = build_metadata('{ "a" : "b" ,  "c" : "d" }', EMAIL, FIELDS).header

    assert header == '{"a":"b","c":"d","_user":"timmanik@email.com"}'


# --- headers built once for the same inputs -----------------------------------------------------


def _header_for(built: BuiltHeaders, incoming: str, user: str, fields: dict[str, str]) -> bytes:
    key = (incoming, user, None, None, True, False)
    if (kept := built.get(key)) is not None:
        return kept[1]
    return built.keep(key, build_metadata(incoming, user, fields))


def test_a_header_without_placeholders_is_built_once_per_client_header_and_user() -> None:
    built = BuiltHeaders()
    incoming = '{"_environment":"production"}'
    first = _header_for(built, incoming, EMAIL, FIELDS)
    assert built.get((incoming, EMAIL, None, None, True, False)) is not None
    assert _header_for(built, incoming, EMAIL, {}) == first
    assert json.loads(_header_for(built, incoming, "other@example.com", FIELDS))["_user"] == "other@example.com"


def test_a_header_with_placeholders_is_filled_from_each_request_s_record() -> None:
    built = BuiltHeaders()
    incoming = '{"name":"{{LIBRECHAT_USER_NAME}}"}'
    assert json.loads(_header_for(built, incoming, EMAIL, FIELDS))["name"] == "Tim Manik"
    assert json.loads(_header_for(built, incoming, EMAIL, {**FIELDS, "NAME": "Tim M."}))["name"] == "Tim M."
    assert built.get((incoming, EMAIL, None, None, True, False)) is None


def test_built_headers_keep_at_most_their_size_the_oldest_dropped_first() -> None:
    built = BuiltHeaders(size=2)
    for user in ("a@example.com", "b@example.com", "c@example.com"):
        _header_for(built, "{}", user, FIELDS)
    assert built.get(("{}", "a@example.com", None, None, True, False)) is None
    assert built.get(("{}", "c@example.com", None, None, True, False)) is not None
