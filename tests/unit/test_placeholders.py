from __future__ import annotations

import pytest

from portkey_user_proxy.attribution.placeholders import fill_user_fields, find_placeholder


@pytest.mark.parametrize(
    "text",
    ["{{LIBRECHAT_USER_ID}}", "{{ LIBRECHAT_USER_EMAIL }}", "{{LIBRECHAT_BODY_CONVERSATIONID}}", "${USER_EMAIL}"],
)
def test_every_librechat_placeholder_is_found(text: str) -> None:
    assert find_placeholder(f"a {text} b") == text


@pytest.mark.parametrize("text", ["{{name}}", "${HOME}", "{LIBRECHAT_USER_ID}", "tim@example.com"])
def test_other_braces_are_not_placeholders(text: str) -> None:
    assert find_placeholder(text) is None


def test_user_placeholders_are_filled_from_the_record_and_others_left_alone() -> None:
    fields = {"EMAIL": "tim@example.com", "ID": "abc"}

    filled = fill_user_fields(
        "{{LIBRECHAT_USER_EMAIL}}/${USER_ID}/{{LIBRECHAT_USER_NAME}}/{{LIBRECHAT_BODY_X}}", fields
    )

    assert filled == "tim@example.com/abc//{{LIBRECHAT_BODY_X}}"
