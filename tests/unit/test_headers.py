from __future__ import annotations

import json
import os
import re
import uuid

import pytest

from portkey_user_proxy.headers import (
    MAX_LENGTH,
    RawHeaders,
    RequestHeaders,
    new_request_id,
    portkey_length,
    response_headers,
    shorten,
    split_request_headers,
)
from tests.support.fixtures import FIXTURES

IDENTITY = b"x-librechat-user-id"
USER_ID = "6651f0c2a1b2c3d4e5f60718"


def _librechat_headers() -> RawHeaders:
    request = json.loads((FIXTURES / "librechat_chat_request.json").read_text())
    return [(name.encode(), value.encode()) for name, value in request["headers"].items()]


def _names(headers: RawHeaders) -> list[bytes]:
    return [name for name, _ in headers]


# --- requests ---------------------------------------------------------------------------------


def test_librechat_request_headers_are_forwarded_except_the_ones_the_proxy_consumes() -> None:
    librechat = _librechat_headers()
    raw = [
        (b"host", b"portkey-user-proxy:8080"),
        (b"content-length", b"412"),
        (b"connection", b"keep-alive"),
        (IDENTITY, USER_ID.encode()),
        *librechat,
    ]

    split = split_request_headers(raw, IDENTITY)

    assert split.forward == [(name, value) for name, value in librechat if name != b"x-portkey-metadata"]
    assert split.identity == USER_ID
    assert split.metadata == '{"_environment":"production"}'
    assert split.content_length == b"412"
    assert split.content_type == b"application/json"


@pytest.mark.parametrize(
    "name",
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ],
)
def test_hop_by_hop_request_headers_are_dropped(name: bytes) -> None:
    split = split_request_headers([(name, b"x"), (b"accept", b"*/*")], IDENTITY)

    assert split.forward == [(b"accept", b"*/*")]


def test_request_headers_named_in_connection_are_dropped() -> None:
    raw = [
        (b"connection", b"Keep-Alive, X-Hop-One ,x-hop-two"),
        (b"x-hop-one", b"1"),
        (b"x-hop-two", b"2"),
        (b"x-end-to-end", b"3"),
    ]

    assert split_request_headers(raw, IDENTITY).forward == [(b"x-end-to-end", b"3")]


@pytest.mark.parametrize("name", [b"host", b"content-length", b"expect", b"x-portkey-metadata", IDENTITY])
def test_headers_the_proxy_recomputes_or_consumes_are_not_forwarded(name: bytes) -> None:
    split = split_request_headers([(name, b"0"), (b"accept", b"*/*")], IDENTITY)

    assert _names(split.forward) == [b"accept"]


def test_identity_header_name_is_configurable() -> None:
    raw = [(b"x-custom-user", USER_ID.encode()), (IDENTITY, b"0123456789abcdef01234567")]

    split = split_request_headers(raw, b"x-custom-user")

    assert split.identity == USER_ID
    assert split.forward == [(IDENTITY, b"0123456789abcdef01234567")]


def test_authorization_and_portkey_headers_pass_byte_for_byte() -> None:
    raw = [
        (b"authorization", b"Bearer  sk-abc/DEF+ghi==  "),
        (b"x-portkey-api-key", b"pk-\xe2\x82\xac-key"),
        (b"x-portkey-config", b'{"retry":{"attempts":3},"cache":{"mode":"simple"}}'),
        (b"x-portkey-trace-id", b"trace-1"),
        (b"x-portkey-virtual-key", b"openai-prod-1a2b3c"),
        (b"x-portkey-virtual-key", b"second-value"),
    ]

    assert split_request_headers(raw, IDENTITY).forward == raw


def test_transfer_encoding_chunked_is_noted_but_not_forwarded() -> None:
    split = split_request_headers([(b"transfer-encoding", b"Chunked")], IDENTITY)

    assert split.chunked
    assert split.has_body
    assert split.forward == []


def test_non_utf8_identity_value_is_read_without_failing() -> None:
    split = split_request_headers([(IDENTITY, b"caf\xe9")], IDENTITY)

    assert split.identity == "caf\xe9"


@pytest.mark.parametrize(
    ("content_length", "chunked", "has_body"),
    [(None, False, False), (b"0", False, False), (b"12", False, True), (None, True, True)],
)
def test_has_body(content_length: bytes | None, chunked: bool, has_body: bool) -> None:
    assert RequestHeaders(content_length=content_length, chunked=chunked).has_body is has_body


def test_content_length_with_surrounding_space_is_read() -> None:
    split = split_request_headers([(b"content-length", b" 0 ")], IDENTITY)

    assert split.content_length == b"0"
    assert not split.has_body


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        (b"application/json", True),
        (b"application/json; charset=utf-8", True),
        (b"Application/JSON ;charset=UTF-8", True),
        (b"application/vnd.x+json", True),
        (b"application/problem+json; charset=utf-8", True),
        (b"multipart/form-data; boundary=----x", False),
        (b"audio/mpeg", False),
        (b"text/plain; note=application/json", False),
        (b"application/jsonl", False),
        (b"", False),
    ],
)
def test_is_json(content_type: bytes, is_json: bool) -> None:
    split = split_request_headers([(b"content-type", content_type)], IDENTITY)

    assert split.is_json is is_json


# --- responses --------------------------------------------------------------------------------


def test_response_hop_by_hop_and_connection_named_headers_are_dropped_whatever_their_case() -> None:
    raw = [
        (b"Content-Type", b"text/event-stream"),
        (b"Connection", b"keep-alive, X-Upstream-Hop"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Upstream-Hop", b"1"),
        (b"Proxy-Authenticate", b"Basic"),
        (b"Upgrade", b"h2c"),
        (b"x-portkey-trace-id", b"trace-1"),
    ]

    assert response_headers(raw) == [(b"Content-Type", b"text/event-stream"), (b"x-portkey-trace-id", b"trace-1")]


@pytest.mark.parametrize("status", [204, 304])
def test_a_response_without_a_body_loses_its_content_length_and_its_hop_by_hop_headers(status: int) -> None:
    # The client would wait for the body a Content-Length announces; a 304's length is the cached body's.
    raw = [
        (b"Content-Length", b"42"),
        (b"Connection", b"X-Upstream-Hop"),
        (b"X-Upstream-Hop", b"1"),
        (b"ETag", b'"v1"'),
    ]

    assert response_headers(raw, status) == [(b"ETag", b'"v1"')]
    assert response_headers(raw, 200) == [(b"Content-Length", b"42"), (b"ETag", b'"v1"')]


def test_response_end_to_end_headers_pass_unchanged_and_in_order() -> None:
    raw = [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"content-length", b"123"),
        (b"server", b"cloudflare"),
        (b"date", b"Sat, 28 Nov 2026 06:50:16 GMT"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-ratelimit-remaining-requests", b"99"),
    ]

    assert response_headers(raw) == raw


def test_a_new_request_id_is_a_random_version_4_uuid_each_time() -> None:
    ids = [new_request_id() for _ in range(600)]  # more than one batch of random bytes

    assert len(set(ids)) == len(ids)
    for request_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert uuid.UUID(hex=request_id).version == 4
        assert uuid.UUID(hex=request_id).variant == uuid.RFC_4122


def test_a_forked_process_never_hands_out_its_parents_request_ids() -> None:
    new_request_id()  # random bytes read, most of them not used yet
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's half
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 64).decode()
    os.close(reader)

    assert childs != new_request_id()


# --- Portkey's limits on metadata values -----------------------------------------------------------


def test_a_long_value_with_a_lone_surrogate_is_shortened_like_any_other() -> None:
    # JSON can carry a lone surrogate (`"\\ud800"`) into metadata: it is one UTF-16 unit, and hashed as it is.
    value = "\ud800" + "a" * MAX_LENGTH
    other = "\udc00" + "a" * MAX_LENGTH

    shortened = shorten(value)

    assert portkey_length(value) == MAX_LENGTH + 1
    assert shortened.startswith("\ud800aaa") and shortened[-17] == "~"
    assert portkey_length(shortened) == MAX_LENGTH
    assert shorten(other) != shortened


def test_a_character_beyond_the_basic_plane_counts_as_two_units_and_is_never_cut_in_half() -> None:
    value = "a" * (MAX_LENGTH - 18) + "\U0001f600" * 10

    shortened = shorten(value)

    assert portkey_length("\U0001f600") == 2
    # 111 units fit before `~` and its 16-character digest: 110 letters, and half an emoji that is left out.
    assert shortened.split("~")[0] == "a" * (MAX_LENGTH - 18)
    assert portkey_length(shortened) == MAX_LENGTH - 1
