"""The server protocol, each rule against a raw-socket client: head bound, trailers, timeouts, connection cap."""

from __future__ import annotations

import json
import pickle
import socket
import time
from typing import Any

import httpx
import pytest
import uvicorn

from portkey_user_proxy.inbound.server import BoundedHttpToolsProtocol
from portkey_user_proxy.operations import cli
from portkey_user_proxy.settings import load_settings
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream, bound_socket, raw_exchange

LIMIT = 4096


def request_head(target: bytes, padding: int) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nhost: proxy\r\nx-padding: " + b"a" * padding + b"\r\n\r\n"


def test_a_head_over_the_bound_gets_431_and_a_closed_connection(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)
    # One byte over the bound and no end of head: the refusal cannot wait for the head to end.
    unfinished = b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-padding: "
    answer = raw_exchange(proxy.server.port, unfinished + b"a" * (LIMIT + 1 - len(unfinished)))

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head
    assert b'"code":"request_header_too_large"' in body
    assert b"MAX_REQUEST_HEAD_BYTES" in body
    assert upstream.received == []
    assert httpx.get(proxy.url + "/healthz", timeout=10).status_code == 200  # other clients are unaffected


def test_a_complete_head_over_the_bound_arriving_in_one_read_gets_431(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)

    answer = raw_exchange(proxy.server.port, request_head(b"/v1/models", 2 * LIMIT))

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert upstream.received == []


def test_a_long_url_counts_against_the_bound(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)

    answer = raw_exchange(proxy.server.port, b"GET /v1/" + b"a" * LIMIT)

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert upstream.received == []


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, however the reads split it."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_heads_within_the_bound_pass_one_after_another_on_one_connection(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)
    head = request_head(b"/v1/models", 3000)  # two of these together are over the bound: it counts per request

    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(head)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]

    assert len(upstream.received) == 2


def test_a_large_body_is_no_head(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)

    response = httpx.post(proxy.url + "/v1/files", content=b"z" * (1 << 20), timeout=10)

    assert response.status_code == 200
    assert len(upstream.last.body) == 1 << 20


def test_serve_runs_uvicorn_with_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))

    cli._serve(load_settings(_env_file=None, max_request_head_bytes=8192), "127.0.0.1", 8080)

    assert ran["http"].func is BoundedHttpToolsProtocol
    assert ran["h11_max_incomplete_event_size"] == 8192
    assert ran["timeout_keep_alive"] == 5
    pickle.loads(pickle.dumps(ran["http"]))  # worker processes receive it pickled


# --- Trailers -------------------------------------------------------------------------------------

KEY = "proxy-key-0123456789abcdef"
USER_ID = "6651f0c2a1b2c3d4e5f60718"


def chunked_post(body: bytes, trailers: bytes, head: bytes = b"") -> bytes:
    """A whole chunked request in one piece: uvicorn parses all of it before the app starts."""
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
        + head
        + b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n"
        + trailers
        + b"\r\n"
    )


def test_a_trailer_cannot_pass_the_inbound_key_check(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(proxy_api_key=KEY)

    answer = raw_exchange(
        proxy.server.port, chunked_post(b'{"user": "x"}', f"authorization: Bearer {KEY}\r\n".encode())
    )

    assert answer.startswith(b"HTTP/1.1 401 ")
    assert upstream.received == []


def test_trailers_change_neither_identity_nor_metadata(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy()
    trailers = b'x-librechat-user-id: ffffffffffffffffffffffff\r\nx-portkey-metadata: {"team": "forged"}\r\nx-t: 1\r\n'

    answer = raw_exchange(proxy.server.port, chunked_post(b'{"user": "%s"}' % USER_ID.encode(), trailers))

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert upstream.last.metadata == {"_user": "timmanik@email.com"}
    assert "x-t" not in upstream.last.headers
    assert upstream.last.body == b'{"user": "%s"}' % USER_ID.encode()


def test_trailers_are_bounded_like_a_head(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)
    endless = chunked_post(b'{"user": "x"}', b"").removesuffix(b"\r\n") + b"x-endless: " + b"a" * (2 * LIMIT)

    answer = raw_exchange(proxy.server.port, endless)

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert upstream.received == []


# --- Timeouts and the connection cap -----------------------------------------------------------------

SHORT = {"request_head_timeout_seconds": 0.3, "request_body_timeout_seconds": 0.3, "keep_alive_timeout_seconds": 0.3}


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; the socket's 10 s timeout fails the test otherwise."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def connect(proxy_port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy_port), timeout=10)


def test_a_connection_that_sends_nothing_is_closed(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(**SHORT)

    with connect(proxy.server.port) as sock:
        assert read_until_closed(sock) == b""


def test_a_head_that_stops_arriving_gets_408(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(**SHORT)

    with connect(proxy.server.port) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"REQUEST_HEAD_TIMEOUT_SECONDS" in answer
    assert upstream.received == []


def test_a_body_that_stops_arriving_gets_408(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(**SHORT)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"

    with connect(proxy.server.port) as sock:
        sock.sendall(head + b"content-length: 100\r\n\r\n" + b'{"user": ')
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"REQUEST_BODY_TIMEOUT_SECONDS" in answer
    assert upstream.received == []


def test_a_streamed_body_that_stops_arriving_gets_408(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(**SHORT)

    with connect(proxy.server.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nhost: proxy\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(**SHORT)

    with connect(proxy.server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: proxy\r\n\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_long_response_is_not_a_slow_client(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(**SHORT)

    with httpx.stream("POST", proxy.url + "/gated-stream", json={"user": USER_ID}, timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines)
        # The timeouts are the client's to use, not the upstream's: a silence longer than all three.
        time.sleep(1)
        for gate in upstream.gates:
            gate.set()
        assert [line for line in lines if line][-1] == "data: [DONE]"


def test_connections_over_the_cap_get_503(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(max_connections=2)
    held = [connect(proxy.server.port) for _ in range(2)]
    for sock in held:  # each connection answered once: the server holds both
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: proxy\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")

    with connect(proxy.server.port) as third:
        answer = read_until_closed(third)

    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b'"code":"too_many_connections"' in answer
    assert b"retry-after: 1" in answer
    for sock in held:
        sock.close()


def test_a_slow_but_steady_body_is_not_cut(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(**SHORT)
    parts = [b"abc"] * 6  # one part every 0.1 s: longer than the body timeout in all, never silent that long

    with connect(proxy.server.port) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nhost: proxy\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        for part in parts:
            time.sleep(0.1)  # the slow client under test, not a wait for the server
            sock.sendall(b"3\r\n" + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert upstream.last.body == b"".join(parts)


def test_a_request_answered_before_its_body_gets_no_second_answer(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(**{**SHORT, "keep_alive_timeout_seconds": 10})
    head = b"POST /healthz HTTP/1.1\r\nhost: proxy\r\ncontent-length: 4096\r\n\r\n"

    with connect(proxy.server.port) as sock:
        sock.sendall(head + b"x" * 10)  # 405 at once, the connection kept open; then the body stalls
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 405 ")
    assert answer.count(b"HTTP/1.1 ") == 1


def test_a_body_the_proxy_is_not_reading_is_no_stalled_body(make_proxy: MakeProxy) -> None:
    # An upstream that accepts nothing: once the socket buffers on the way are full the proxy stops
    # reading the client's body, and that silence is the proxy's, not the client's. The upstream
    # timeout answers instead of the body timeout; the rest of the body is then read and dropped,
    # and the connection, idle, is closed after the keep-alive timeout.
    silent = bound_socket()
    proxy = make_proxy(
        portkey_url=f"http://127.0.0.1:{silent.getsockname()[1]}", upstream_read_timeout_seconds=2, **SHORT
    )
    body = b"x" * (48 << 20)  # more than the loopback socket buffers on the way can hold

    with silent, connect(proxy.server.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nhost: proxy\r\ncontent-length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 50"), answer[:200]


INVALID_HEADS = {
    "content-length and transfer-encoding": b"content-length: 4\r\ntransfer-encoding: chunked\r\n",
    "two content-lengths": b"content-length: 2\r\ncontent-length: 3\r\n",
    "a folded header": b"x-librechat-user-id: a\r\n b\r\n",
    "a space before the colon": b"content-length : 2\r\n",
    "a NUL in a value": b"x-librechat-user-id: a\x00b\r\n",
}


@pytest.mark.parametrize("header", INVALID_HEADS.values(), ids=INVALID_HEADS.keys())
def test_an_invalid_request_gets_the_proxys_json_400_and_a_closed_connection(
    make_proxy: MakeProxy, upstream: Upstream, header: bytes
) -> None:
    proxy = make_proxy()

    answer = raw_exchange(proxy.server.port, b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\n" + header + b"\r\n{}")

    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head
    assert json.loads(body)["error"]["code"] == "invalid_http_request"
    assert upstream.received == []


def test_a_broken_request_after_a_valid_one_is_refused_only_after_the_valid_one_is_answered(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = make_proxy()
    valid = b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    answer = raw_exchange(proxy.server.port, valid + b"NOT HTTP\r\n\r\n")

    first, refusal = answer.split(b"HTTP/1.1 400 Bad Request\r\n")
    assert first.startswith(b"HTTP/1.1 200 "), "the request that went upstream gets its own answer"
    assert first.endswith(b'{"echo": "/v1/embeddings"}')
    assert refusal.endswith(b'"code":"invalid_http_request"}}')
    assert len(upstream.received) == 1


def test_a_broken_chunk_after_the_answer_adds_nothing_to_the_answer(make_proxy: MakeProxy, upstream: Upstream) -> None:
    # A request answered before its body ended (refused at once under fail-closed) whose body then breaks.
    proxy = make_proxy(unresolved_user_policy="fail-closed")
    head = b"POST /v1/files HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"

    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as sock:
        sock.sendall(head + b"2\r\nab\r\n")
        answer = _read_one_response(sock)
        sock.sendall(b"zz\r\n")
        rest = sock.recv(65536)

    assert answer.startswith(b"HTTP/1.1 403 ")
    assert rest == b"", "nothing after the answer: a stray 400 would answer the client's next request"


def _read_one_response(sock: socket.socket) -> bytes:
    """One response with a content-length, read whole and no further."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head = answer.split(b"\r\n\r\n", 1)[0]
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    while len(answer) < len(head) + 4 + length:
        answer += sock.recv(65536)
    return answer
