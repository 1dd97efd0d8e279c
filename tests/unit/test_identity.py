from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkey_user_proxy.attribution.identity import Identity, IdentitySource, find_placeholder, identify

USER_ID = "6651f0c2a1b2c3d4e5f60718"  # the fixture user's `_id`, as LibreChat sends it
OTHER_ID = "0123456789abcdef01234567"


def test_header_wins_over_body() -> None:
    identity = identify(OTHER_ID, USER_ID)

    assert identity == Identity(OTHER_ID, IdentitySource.HEADER)
    assert identity.object_id == OTHER_ID


@pytest.mark.parametrize("header", [None, "", "   "])
def test_body_user_is_used_when_the_header_is_absent_or_blank(header: str | None) -> None:
    identity = identify(header, USER_ID)

    assert identity == Identity(USER_ID, IdentitySource.BODY)
    assert identity.object_id == USER_ID


@pytest.mark.parametrize(
    "header",
    [
        "{{LIBRECHAT_USER_ID}}",
        "{{ LIBRECHAT_USER_ID }}",
        "{{LIBRECHAT_USER_EMAIL}}",
        "${USER_ID}",
        " {{LIBRECHAT_USER_ID}}\t",
    ],
)
def test_unresolved_header_placeholder_is_reported_and_the_body_user_used(header: str) -> None:
    identity = identify(header, USER_ID)

    assert identity.raw == USER_ID
    assert identity.source is IdentitySource.BODY
    assert identity.object_id == USER_ID
    assert identity.unresolved_placeholder == header.strip()


def test_placeholder_embedded_in_a_header_value_is_not_trusted() -> None:
    identity = identify("user-{{LIBRECHAT_USER_ID}}", USER_ID)

    assert identity.source is IdentitySource.BODY
    assert identity.unresolved_placeholder == "{{LIBRECHAT_USER_ID}}"


def test_unresolved_header_placeholder_without_body_user_names_nobody() -> None:
    identity = identify("{{LIBRECHAT_USER_ID}}", None)

    assert identity == Identity(None, IdentitySource.NONE, "{{LIBRECHAT_USER_ID}}")
    assert identity.object_id is None


def test_placeholder_in_the_body_user_is_reported_and_not_trusted() -> None:
    identity = identify(None, "{{LIBRECHAT_USER_ID}}")

    assert identity == Identity(None, IdentitySource.NONE, "{{LIBRECHAT_USER_ID}}")


def test_no_header_and_no_body_user_names_nobody() -> None:
    assert identify(None, None) == Identity(None, IdentitySource.NONE)


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.com",
        USER_ID[:-1],  # 23 characters
        USER_ID + "0",  # 25 characters
        USER_ID[:-1] + "g",  # not hex
        "6651f0c2 a1b2c3d4e5f60718",
        f'ObjectId("{USER_ID}")',
        "\uff10" * 24,  # fullwidth digits are not hex for MongoDB
        "{{SOMETHING_ELSE}}",
    ],
)
@pytest.mark.parametrize("from_header", [True, False])
def test_value_that_is_not_an_object_id_is_kept_raw_but_never_queried(value: str, from_header: bool) -> None:
    identity = identify(value, None) if from_header else identify(None, value)

    assert identity.raw == value
    assert identity.source is (IdentitySource.HEADER if from_header else IdentitySource.BODY)
    assert identity.object_id is None


def test_uppercase_hex_is_normalised_to_mongodb_form() -> None:
    assert identify(None, USER_ID.upper()).object_id == USER_ID
    assert identify(USER_ID.upper(), None).object_id == USER_ID


@pytest.mark.parametrize("padding", [" ", "\t", "\n", " \r\n "])
def test_surrounding_whitespace_is_ignored(padding: str) -> None:
    from_header = identify(f"{padding}{OTHER_ID}{padding}", USER_ID)
    from_body = identify(None, f"{padding}{USER_ID}{padding}")

    assert (from_header.raw, from_header.object_id) == (OTHER_ID, OTHER_ID)
    assert (from_body.raw, from_body.object_id) == (USER_ID, USER_ID)


@pytest.mark.parametrize("body_user", [12345, 6.5, True, [USER_ID], {"$oid": USER_ID}, None, "", "   "])
def test_body_user_that_is_not_a_non_empty_string_is_ignored(body_user: object) -> None:
    identity = identify(None, body_user)

    assert identity == Identity(None, IdentitySource.NONE)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"_user":"{{LIBRECHAT_USER_EMAIL}}"}', "{{LIBRECHAT_USER_EMAIL}}"),
        ("a ${USER_EMAIL} b {{LIBRECHAT_USER_ID}}", "${USER_EMAIL}"),
        ("tim@example.com", None),
        (USER_ID, None),
        ("{{name}}", None),
    ],
)
def test_find_placeholder_returns_the_first_leaked_placeholder(text: str, found: str | None) -> None:
    assert find_placeholder(text) == found


_ANY_BODY_USER = st.one_of(st.none(), st.text(), st.integers(), st.lists(st.text(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.none(), st.text()), body_user=_ANY_BODY_USER)
def test_object_id_is_always_none_or_24_lowercase_hex(header: str | None, body_user: object) -> None:
    identity = identify(header, body_user)

    assert identity.object_id is None or re.fullmatch(r"[0-9a-f]{24}", identity.object_id)
    assert (identity.raw is None) == (identity.source is IdentitySource.NONE)
    if identity.raw is not None:
        assert identity.raw == identity.raw.strip() and identity.raw
        assert find_placeholder(identity.raw) is None


def test_body_fields_are_tried_in_the_order_given() -> None:
    assert identify(None, "tim", "tom") == Identity("tim", IdentitySource.BODY)
    assert identify(None, None, "tom") == Identity("tom", IdentitySource.BODY)


def test_an_object_id_in_a_later_body_field_wins_over_other_text_in_an_earlier_one() -> None:
    assert identify(None, "tim", USER_ID) == Identity(USER_ID, IdentitySource.BODY)
    assert identify("alice", "tim", USER_ID) == Identity(USER_ID, IdentitySource.BODY)


def test_the_header_object_id_wins_over_every_body_field() -> None:
    assert identify(OTHER_ID, USER_ID, USER_ID) == Identity(OTHER_ID, IdentitySource.HEADER)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_placeholder_in_any_field_is_reported_and_skipped(position: int) -> None:
    values: list[str | None] = [None, None, None]
    values[position] = "{{LIBRECHAT_USER_ID}}"
    values[(position + 1) % 3] = USER_ID

    identity = identify(values[0], values[1], values[2])

    assert identity.raw == USER_ID
    assert identity.unresolved_placeholder == "{{LIBRECHAT_USER_ID}}"


@pytest.mark.parametrize(
    "value",
    ["Bearer sk-live-0123456789abcdef", "sk-ant-api03-0123456789", "basic dXNlcjpwYXNz", "eyJhbGciOiJIUzI1NiJ9.e30.x"],
)
def test_a_credential_shaped_id_is_never_shown_in_logs(value: str) -> None:
    shown = identify(value).for_logs()

    assert shown == "(a value shaped like a credential, hidden)"


@pytest.mark.parametrize(("value", "shown"), [("alice", "'alice'"), ("evil\nline", "'evil\\nline'"), (None, "-")])
def test_any_other_id_is_shown_escaped_in_logs(value: str | None, shown: str) -> None:
    assert identify(value).for_logs() == shown


def test_a_placeholder_leaked_beside_an_id_that_is_no_object_id_is_still_reported() -> None:
    # The admin sees the leak (a warning, the `placeholder` reason) whichever value names the user.
    identity = identify("{{LIBRECHAT_USER_EMAIL}}", "alice@example.com")

    assert identity == Identity("alice@example.com", IdentitySource.BODY, "{{LIBRECHAT_USER_EMAIL}}")
    assert identity.object_id is None
