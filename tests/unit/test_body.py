from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from portkey_user_proxy.asgi import Message, Receive
from portkey_user_proxy.dialects.fields import json_fields
from portkey_user_proxy.dialects.json_body import FULL_PARSE_LIMIT, parse_json_object, with_stream_usage
from portkey_user_proxy.inbound.body import BodyTooLarge, ClientDisconnected, read_body, stream_body
from tests.support.fixtures import FIXTURES

SPLICED = b'"stream_options":{"include_usage":true},'


class FakeReceive:
    """An ASGI `receive` that hands out the given messages in order and counts how many were taken."""

    def __init__(self, messages: Iterable[Message]) -> None:
        self._messages = list(messages)
        self.taken = 0

    async def __call__(self) -> Message:
        message = self._messages[self.taken]
        self.taken += 1
        return message


def _chunks(*parts: bytes) -> list[Message]:
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]


def _usage_added(body: bytes) -> bytes:
    fields = json_fields(body)  # what the forwarder hands over
    assert fields is not None
    return with_stream_usage(body, fields)


# --- with_stream_usage ------------------------------------------------------------------------


def test_streaming_request_from_librechat_asks_for_usage_and_keeps_its_bytes() -> None:
    body = json.dumps(json.loads((FIXTURES / "librechat_chat_request.json").read_text())["body"], indent=2).encode()

    sent = _usage_added(body)

    assert orjson.loads(sent)["stream_options"] == {"include_usage": True}
    assert sent.replace(SPLICED, b"", 1) == body


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"gpt-4o-mini","stream":true,"messages":[]}',
        b'  \n{ "z": 1,\t"stream" : true ,  "a": "\\u00e9\xc3\xa9", "n": 1.0000 }\n',
        b'{"stream":true,"seed":123456789012345678901234567890}',
    ],
)
def test_usage_is_spliced_in_without_touching_the_clients_bytes(body: bytes) -> None:
    sent = _usage_added(body)

    assert sent.count(SPLICED) == 1
    assert sent.replace(SPLICED, b"", 1) == body
    parsed = json.loads(sent)
    assert parsed.pop("stream_options") == {"include_usage": True}
    assert parsed == json.loads(body)


@pytest.mark.parametrize(
    ("stream_options", "merged"),
    [
        ({"continuous_usage_stats": True}, {"continuous_usage_stats": True, "include_usage": True}),
        ({}, {"include_usage": True}),
        (None, {"include_usage": True}),
    ],
)
def test_usage_is_merged_into_existing_stream_options(stream_options: Any, merged: dict[str, Any]) -> None:
    request = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": stream_options,
        "user": "u",
        "temperature": 0.7,
    }

    sent = json.loads(_usage_added(json.dumps(request).encode()))

    assert sent == {**request, "stream_options": merged}
    assert list(sent) == list(request)


@pytest.mark.parametrize("include_usage", ["false", "true", "null"])
def test_explicit_include_usage_is_respected(include_usage: str) -> None:
    body = f'{{"stream": true, "stream_options": {{"include_usage": {include_usage}}}}}'.encode()

    assert _usage_added(body) == body


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"gpt-4o-mini","messages":[]}',
        b'{"stream":false,"messages":[]}',
        b'{"stream":null}',
        b'{"stream":"true"}',
        b'{"stream":1}',
    ],
)
def test_non_streaming_bodies_are_untouched(body: bytes) -> None:
    assert _usage_added(body) == body


def test_stream_options_of_an_unexpected_type_are_left_for_the_upstream_to_judge() -> None:
    body = b'{"stream":true,"stream_options":"yes"}'

    assert _usage_added(body) == body


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"1e400", b"-1e400"])
def test_stream_options_are_not_merged_into_a_body_whose_numbers_would_not_survive_a_rebuild(value: bytes) -> None:
    body = b'{"stream":true,"stream_options":{},"temperature":' + value + b"}"

    assert _usage_added(body) == body


def test_stream_options_are_not_merged_into_a_body_too_large_to_rebuild() -> None:
    padding = b'"pad":"' + b"x" * FULL_PARSE_LIMIT + b'",'
    body = b"{" + padding + b'"stream":true,"stream_options":{}}'

    assert _usage_added(body) is body


# --- parse_json_object ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b"{'a': 1}", b'{"a":1}{"b":2}'])
def test_invalid_json_is_not_an_object(body: bytes) -> None:
    assert parse_json_object(body) is None


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_json_in_another_encoding_than_utf8_is_not_an_object(encoding: str) -> None:
    assert parse_json_object('{"user":"u","n":123456789012345678901234567890}'.encode(encoding)) is None


def test_json_after_a_utf8_byte_order_mark_is_an_object() -> None:
    assert parse_json_object(b'\xef\xbb\xbf{"user":"u","n":1e400}') == {"user": "u", "n": float("inf")}


@pytest.mark.parametrize("body", [b"[]", b'[{"user":"u"}]', b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_not_an_object(body: bytes) -> None:
    assert parse_json_object(body) is None


def test_json_object_is_parsed() -> None:
    assert parse_json_object(b' {"user": "6651f0c2a1b2c3d4e5f60718", "n": [1]} ') == {
        "user": "6651f0c2a1b2c3d4e5f60718",
        "n": [1],
    }


# --- read_body --------------------------------------------------------------------------------


def _read(receive: Receive, limit: int) -> bytes:
    return asyncio.run(read_body(receive, limit))


def test_read_body_joins_the_parts() -> None:
    assert _read(FakeReceive(_chunks(b'{"a"', b"", b':"b"}')), limit=1024) == b'{"a":"b"}'


def test_read_body_accepts_a_message_without_a_body_key() -> None:
    assert _read(FakeReceive([{"type": "http.request"}]), limit=1024) == b""


def test_read_body_accepts_exactly_the_limit() -> None:
    assert _read(FakeReceive(_chunks(b"ab", b"cd")), limit=4) == b"abcd"


def test_read_body_stops_reading_once_the_limit_is_exceeded() -> None:
    receive = FakeReceive(_chunks(b"abc", b"def", b"ghi", b"jkl"))

    with pytest.raises(BodyTooLarge) as raised:
        _read(receive, limit=5)

    assert raised.value.limit == 5
    assert receive.taken == 2


def test_read_body_raises_when_the_client_disconnects() -> None:
    receive = FakeReceive([*_chunks(b"abc", b"def")[:1], {"type": "http.disconnect"}])

    with pytest.raises(ClientDisconnected):
        _read(receive, limit=1024)


# --- stream_body ------------------------------------------------------------------------------


def test_stream_body_yields_each_part_as_it_arrives_and_signals_the_end() -> None:
    async def scenario() -> None:
        receive = FakeReceive(_chunks(b"part-1", b"", b"part-2"))
        done = asyncio.Event()
        parts = stream_body(receive, done)

        assert await anext(parts) == b"part-1"
        assert receive.taken == 1
        assert not done.is_set()
        assert [part async for part in parts] == [b"part-2"]
        assert done.is_set()

    asyncio.run(scenario())


def test_stream_body_raises_when_the_client_disconnects() -> None:
    async def scenario() -> None:
        receive = FakeReceive([*_chunks(b"part-1", b"more")[:1], {"type": "http.disconnect"}])
        done = asyncio.Event()

        with pytest.raises(ClientDisconnected):
            _ = [part async for part in stream_body(receive, done)]
        assert not done.is_set()

    asyncio.run(scenario())
