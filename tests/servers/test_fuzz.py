"""Random methods, paths, headers, metadata, bodies and trailers thrown at the running proxy.

Whatever arrives, the proxy itself never answers 5xx (its upstream here always answers 200), never
forwards the identity header, the conversation header or its own `Authorization`, every
`x-portkey-metadata` it forwards is one JSON object of strings Portkey accepts, no request leaves
`PORTKEY_URL`'s path, trailers change nothing, and `/metrics` keeps answering.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portkey_user_proxy.attribution.identity import identify
from portkey_user_proxy.attribution.metadata import portkey_length
from portkey_user_proxy.dialects import dialect_for
from portkey_user_proxy.inbound.target import has_dot_segment
from portkey_user_proxy.observability.logs import escape_for_log
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import ServerThread, raw_exchange

KEY = "fuzz-proxy-key-0123456789"
PORTKEY_KEY = "pk-fuzz"
KNOWN_USER = "6651f0c2a1b2c3d4e5f60718"
IDENTITY = "x-librechat-user-id"
CONVERSATION = "x-librechat-conversation-id"
PREFIX = "/portkey"
# Headers the proxy sets upstream itself: a trailer of the same name and value may match them by chance.
PROXY_SET = {"host", "content-type", "content-length", "x-portkey-api-key", "x-portkey-metadata", "x-request-id"}
# Headers that frame the request itself: a client library sets them, a fuzzer must not.
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te", "trailer"}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# The servers run in threads of this process, and pymongo and mockupdb number their messages with the
# `random` module: Hypothesis sees its state change while it draws an example, which it would report.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


@dataclass
class Echo:
    """An upstream that answers 200 to anything, and records what reached it."""

    received: list[list[tuple[str, str]]] = field(default_factory=list)
    paths: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Aborted mid-body (its client sent a broken chunk or trailer): it may be noticed after
                # the next example has begun, and it never reached the upstream whole.
                return
            if not message.get("more_body"):
                break
        self.received.append([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]])
        self.paths.append(scope["raw_path"])
        body = b'{"ok":true,"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    app = Echo()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def fuzzed(make_proxy: MakeProxy, echo: tuple[Echo, str]) -> Iterator[tuple[RunningProxy, Echo, httpx.Client]]:
    app, url = echo
    proxy = make_proxy(
        portkey_url=url + PREFIX,
        proxy_api_key=KEY,
        portkey_api_key=PORTKEY_KEY,
        user_lookup_timeout_seconds=5,
        metrics_per_user_tokens=True,
    )
    with httpx.Client(timeout=30) as client:
        yield proxy, app, client


# --- What is thrown -------------------------------------------------------------------------------

# Anything an HTTP client can send in a header value (sent as UTF-8): no control characters, no
# space or tab at either end.
header_values = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60).map(lambda v: v.strip(" \t"))
header_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~", min_size=1, max_size=20).filter(
    lambda name: name not in FRAMING
)
placeholders = st.sampled_from(
    ["{{LIBRECHAT_USER_ID}}", "{{LIBRECHAT_USER_EMAIL}}", "${USER_EMAIL}", "{{LIBRECHAT_BODY_CONVERSATIONID}}"]
)
ids = st.one_of(
    st.just(KNOWN_USER),
    st.text("0123456789abcdefABCDEF", min_size=24, max_size=24),
    placeholders,
    header_values,
)
# Lone surrogates (JSON's "\ud800" escapes), control characters and line separators, which JSON carries.
hostile_text = st.text(st.one_of(st.characters(categories=["Cs", "Cc", "Zl", "Zp"]), st.characters()), max_size=40)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=200),
    placeholders,
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=150), inner, max_size=4),
    max_leaves=12,
)
metadata_values = st.one_of(
    st.dictionaries(st.one_of(st.text(max_size=150), st.just("_user")), json_values, max_size=6).map(json.dumps),
    json_values.map(json.dumps),
    header_values,
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.fixed_dictionaries(
        {"user": st.one_of(ids, json_values)},
        optional={
            "stream": json_values,
            "stream_options": json_values,
            "messages": json_values,
            "safety_identifier": st.one_of(ids, json_values),
            "metadata": st.one_of(st.fixed_dictionaries({"user_id": st.one_of(ids, json_values)}), json_values),
        },
    ).map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=2**64).map(lambda big: b'{"user": "%s", "n": %d}' % (KNOWN_USER.encode(), big)),
    st.integers(min_value=1, max_value=3000).map(lambda depth: b"[" * depth + b"]" * depth),
)
special_headers = st.fixed_dictionaries(
    {},
    optional={
        IDENTITY: st.one_of(ids, header_values),
        "x-portkey-metadata": metadata_values,
        CONVERSATION: st.one_of(st.uuids().map(str), placeholders, header_values),
        "x-portkey-trace-id": header_values,
        "x-portkey-api-key": st.one_of(st.just("${PORTKEY_API_KEY}"), header_values),
        "content-type": st.sampled_from(["application/json", "text/plain", "application/vnd.api+json", "x/y"]),
    },
)
# Dot segments in their spellings, percent-encoded controls (CR LF, ESC, NUL) and an encoded surrogate.
path_segments = st.one_of(
    st.sampled_from(
        [".", "..", "%2e%2e", "%2E.", ".%2e", "..%2f", "..%5c", "%0d%0aFORGED", "%1b[2K", "%00", "%ed%a0%80"]
    ),
    st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-._~%;,=@:!$&'()*+", max_size=12),
)
paths = st.one_of(
    st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/audio/transcriptions"]),
    st.sampled_from(["/v1/responses", "/v1/messages"]),
    st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-._~%/;,=@:!$&'()*+", max_size=40).map(lambda p: "/" + p),
    st.lists(path_segments, min_size=1, max_size=6).map(lambda segments: "/" + "/".join(segments)),
)
queries = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~%=&+/", max_size=30)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8).filter(lambda m: m != "CONNECT"),
)
authorizations = st.one_of(
    st.just(f"Bearer {KEY}"),
    st.just(f"bearer {KEY}"),
    st.just(f"Bearer {KEY[:-1]}"),
    st.just(KEY),
    header_values,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str, list[tuple[str, str]], bytes | None]:
    headers = [(name, value) for name, value in draw(special_headers).items()]
    headers += draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    authorization = draw(st.one_of(st.none(), authorizations, authorizations, authorizations))
    if authorization is not None:
        headers.append(("authorization", authorization))
    return draw(methods), draw(paths), draw(queries), headers, draw(bodies)


# --- What must hold -------------------------------------------------------------------------------


def send(proxy: RunningProxy, client: httpx.Client, request: tuple[Any, ...]) -> httpx.Response:
    method, path, query, headers, body = request
    target = path.encode() + (b"?" + query.encode() if query else b"")
    url = httpx.URL(proxy.url).copy_with(raw_path=target)
    encoded = [(name.encode(), value.encode()) for name, value in headers]
    return client.request(method, url, headers=encoded, content=body)


def assert_within_the_prefix(echo: Echo) -> None:
    for path in echo.paths:
        assert path.startswith(PREFIX.encode() + b"/"), path
        assert not has_dot_segment(path), path


def assert_metrics_answer(proxy: RunningProxy, client: httpx.Client) -> None:
    scrape = client.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {KEY}"})
    assert scrape.status_code == 200
    for line in scrape.text.splitlines():
        if line.startswith("portkey_user_proxy_user_tokens_total{"):
            assert 'user="timmanik@email.com"' in line, "a series for a user nobody resolved"


def assert_forwarded_cleanly(forwarded: list[tuple[str, str]]) -> None:
    names = [name for name, _ in forwarded]
    assert "authorization" not in names, "the proxy's own key went upstream"
    assert IDENTITY not in names
    assert CONVERSATION not in names
    assert names.count("x-portkey-api-key") == 1
    metadata = [value for name, value in forwarded if name == "x-portkey-metadata"]
    assert len(metadata) <= 1
    for value in metadata:
        assert value.isascii()
        parsed = json.loads(value)
        assert isinstance(parsed, dict)
        for key, item in parsed.items():
            assert isinstance(key, str) and portkey_length(key) <= 128
            assert isinstance(item, str) and portkey_length(item) <= 128


@FUZZ
@given(request=requests())
def test_the_proxy_stays_well_behaved_whatever_it_receives(
    fuzzed: tuple[RunningProxy, Echo, httpx.Client], request: tuple[Any, ...]
) -> None:
    proxy, echo, client = fuzzed
    echo.received.clear()

    response = send(proxy, client, request)

    assert response.status_code < 500, response.text
    authorized = [value for name, value in request[3] if name == "authorization"]
    if len(authorized) != 1 or authorized[0].strip().partition(" ")[2].strip() != KEY or response.status_code == 401:
        assert response.status_code in (400, 401), "a request without the key was answered by the upstream"
        assert echo.received == []
    for forwarded in echo.received:
        assert_forwarded_cleanly(forwarded)
    assert_within_the_prefix(echo)
    assert_metrics_answer(proxy, client)


@FUZZ
@given(
    metadata=metadata_values,
    identity=st.one_of(st.none(), ids),
    user=st.one_of(ids, json_values),
    conversation=st.one_of(st.none(), st.uuids().map(str), placeholders),
)
def test_metadata_is_always_a_json_object_portkey_accepts(
    fuzzed: tuple[RunningProxy, Echo, httpx.Client],
    metadata: str,
    identity: str | None,
    user: object,
    conversation: str | None,
) -> None:
    proxy, echo, client = fuzzed
    echo.received.clear()
    headers = {"authorization": f"Bearer {KEY}", "x-portkey-metadata": metadata}
    if identity is not None:
        headers[IDENTITY] = identity
    if conversation is not None:
        headers[CONVERSATION] = conversation
    encoded = {name.encode(): value.encode() for name, value in headers.items()}
    encoded[b"content-type"] = b"application/json"
    body = json.dumps({"user": user, "messages": []})  # infinities included: JSON the proxy cannot parse

    response = client.post(proxy.url + "/v1/chat/completions", headers=encoded, content=body)

    assert response.status_code == 200
    (forwarded,) = echo.received
    assert_forwarded_cleanly(forwarded)
    sent = dict(forwarded)
    # Fail-open: `_user` is always set (Portkey would copy the body's `user` otherwise), and it is an
    # ObjectId or the fixed marker, never any other text a client sent.
    claimed = identify(identity, user)
    sent_user = json.loads(sent["x-portkey-metadata"])["_user"]
    if claimed.object_id == KNOWN_USER:
        assert sent_user == "timmanik@email.com"
    else:
        assert sent_user == (claimed.object_id or "unidentified")
    if conversation is not None and "{{" not in conversation:
        assert sent["x-portkey-trace-id"] == conversation


# --- On the wire: what an HTTP client library would not send ------------------------------------------

trailer_names = st.one_of(
    st.sampled_from(["authorization", IDENTITY, "x-portkey-metadata", "x-portkey-api-key", "content-length", "host"]),
    header_names,
)
trailer_values = st.one_of(
    st.just(f"Bearer {KEY}"),
    st.just(KNOWN_USER),
    st.just('{"_user": "forged@corp.example"}'),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[str, str]], str]:
    path = draw(paths).encode()
    user = draw(st.one_of(ids, hostile_text))
    body = json.dumps({"user": user, "messages": []}).encode()
    trailers = draw(st.lists(st.tuples(trailer_names, trailer_values), max_size=4))
    return path, body, trailers, user


# Header values only a raw socket sends: controls (ESC, DEL, NUL...) and obs-text bytes.
raw_header_values = st.binary(max_size=30).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b"").strip())


@FUZZ
@given(request=raw_requests(), authorized=st.booleans(), request_id=raw_header_values)
def test_trailers_and_raw_paths_change_nothing_the_head_did_not_say(
    fuzzed: tuple[RunningProxy, Echo, httpx.Client],
    request: tuple[bytes, bytes, list[tuple[str, str]], str],
    authorized: bool,
    request_id: bytes,
) -> None:
    proxy, echo, client = fuzzed
    echo.received.clear()
    echo.paths.clear()
    path, body, trailers, user = request
    # A request an earlier example's refusal cut short can reach the upstream late: look at this one's only.
    example = uuid.uuid4().hex
    head = b"POST " + path + b" HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
    head += b"x-fuzz-example: " + example.encode() + b"\r\n"
    head += b"x-request-id: " + request_id + b"\r\n"
    if authorized:
        head += f"authorization: Bearer {KEY}\r\n".encode()
    head += b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    trailer_block = b"".join(f"{name}: {value}\r\n".encode() for name, value in trailers)
    wire = head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailer_block + b"\r\n"

    answer = raw_exchange(proxy.server.port, wire)

    status = int(answer.split(b" ", 2)[1])
    assert status < 500, answer[:300]
    received = [forwarded for forwarded in echo.received if ("x-fuzz-example", example) in forwarded]
    if not authorized:
        assert status in (400, 401) and received == []
    if has_dot_segment(path):
        assert status in (400, 401) and received == []
    assert_within_the_prefix(echo)
    for forwarded in received:
        assert_forwarded_cleanly(forwarded)
        for trailer in trailers:
            if trailer[0] not in PROXY_SET and trailer[1]:
                assert trailer not in forwarded, f"the trailer {trailer[0]} went upstream"
        metadata = json.loads(dict(forwarded)["x-portkey-metadata"])
        # The body names the user only on the paths of an API family that has a `user` field.
        claimed = identify(None, *dialect_for(unquote(path.decode())).identity_fields({"user": user}))
        assert metadata["_user"] == (
            "timmanik@email.com" if claimed.object_id == KNOWN_USER else claimed.object_id or "unidentified"
        )
    assert_metrics_answer(proxy, client)


@settings(max_examples=500, deadline=None)
@given(text=st.text(st.one_of(st.characters(categories=["Cs", "Cc", "Zl", "Zp"]), st.characters())))
def test_escaped_log_text_holds_no_line_breaks_controls_or_surrogates(text: str) -> None:
    escaped = escape_for_log(text)

    assert not any(unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") for char in escaped)
    escaped.encode("utf-8")  # never fails to encode
    # Unambiguous: the escapes are Python's own, and read back to the very text.
    assert escaped.encode("latin-1", "backslashreplace").decode("unicode_escape") == text
