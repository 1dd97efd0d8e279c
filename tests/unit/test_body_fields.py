from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkey_user_proxy.dialects.fields import OPAQUE, json_fields
from portkey_user_proxy.dialects.json_body import FULL_PARSE_LIMIT, with_stream_usage

USER_ID = "6651f0c2a1b2c3d4e5f60718"


def test_only_the_fields_the_proxy_reads_are_returned() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}] * 3,
        "user": USER_ID,
        "safety_identifier": "s",
        "metadata": {"user_id": USER_ID},
        "stream": True,
        "stream_options": {"include_usage": False},
    }

    assert json_fields(json.dumps(body).encode()) == {
        "model": "m",
        "user": USER_ID,
        "safety_identifier": "s",
        "metadata": {"user_id": USER_ID},
        "stream": True,
        "stream_options": {"include_usage": False},
    }


def test_absent_fields_are_absent_and_null_ones_are_none() -> None:
    assert json_fields(b'{"n":1,"stream_options":null}') == {"stream_options": None}


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b"{'a': 1}", b'{"a":1}{"b":2}', b'{"a":1} x'])
def test_invalid_json_has_no_fields(body: bytes) -> None:
    assert json_fields(body) is None


@pytest.mark.parametrize("body", [b"[]", b'[{"user":"u"}]', b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_has_no_fields(body: bytes) -> None:
    assert json_fields(body) is None


def test_the_last_of_repeated_keys_wins_as_in_every_json_parser_the_upstream_may_use() -> None:
    assert json_fields(b'{"user":"first","user":"last"}') == {"user": "last"}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b'{"user":"' + USER_ID.encode() + b'","n":123456789012345678901234567890}', {"user": USER_ID}),
        (b'{"user":123456789012345678901234567890}', {"user": 123456789012345678901234567890}),
        (b'{"user":"' + USER_ID.encode() + b'","t":"\\ud800"}', {"user": USER_ID}),  # a lone surrogate elsewhere
        (b'{"user":"\\ud800","n":NaN}', {"user": "\ud800"}),
    ],
)
def test_valid_json_the_fast_parsers_refuse_still_gives_its_fields(body: bytes, fields: dict[str, object]) -> None:
    assert json_fields(body) == fields


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_deeper_than_the_stack_has_no_fields(depth: int) -> None:
    body = b'{"user":"' + USER_ID.encode() + b'","messages":' + b"[" * depth + b"]" * depth + b"}"

    assert json_fields(body) is None


def test_a_large_body_the_fast_parser_refuses_is_never_parsed_whole() -> None:
    body = b'{"user":"' + USER_ID.encode() + b'","t":"\\ud800","pad":"' + b"x" * FULL_PARSE_LIMIT + b'"}'

    assert json_fields(body) is None


def test_a_field_too_long_to_be_an_id_or_an_option_is_opaque() -> None:
    long_text = "x" * 100_000
    body = json.dumps({"user": long_text, "stream": True, "stream_options": {"pad": long_text}}).encode()

    fields = json_fields(body)

    assert fields == {"user": OPAQUE, "stream": True, "stream_options": OPAQUE}
    assert with_stream_usage(body, fields) is body, "options it cannot read are never overwritten"


def test_large_bodies_of_small_objects_are_read_for_their_fields() -> None:
    messages = b",".join(b'{"role":"user","content":"%d"}' % n for n in range(200_000))
    body = b'{"messages":[' + messages + b'],"user":"' + USER_ID.encode() + b'","stream":true}'

    assert json_fields(body) == {"user": USER_ID, "stream": True}


_NAMES = ("user", "safety_identifier", "metadata", "stream", "stream_options", "model")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(document=st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=8), _JSON, max_size=8))
def test_the_fields_are_those_a_full_parse_finds(document: dict[str, object]) -> None:
    body = json.dumps(document).encode()

    assert json_fields(body) == {name: value for name, value in json.loads(body).items() if name in _NAMES}


@pytest.mark.parametrize(
    "value",
    [
        *(
            b'"plain"',
            b'""',
            '"ünïcode ☃"'.encode(),
            b'"a \\"quoted\\" id"',
            b'"\\u00e9\\ud83d\\ude00"',
            b'"back\\\\slash"',
        ),
        *(b"true", b"false", b"null", b"123456789012345678901234567890", b"-1", b"1.5e3", b"[1]", b'{"a": "b"}'),
    ],
)
def test_a_field_reads_as_a_full_parse_reads_it(value: bytes) -> None:
    body = b'{"user": ' + value + b', "model": "m"}'

    assert json_fields(body) == {"user": json.loads(value), "model": "m"}
