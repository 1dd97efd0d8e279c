"""The server's own refusals (408, 431, 503) count in `errors_total` like the app's errors."""

from __future__ import annotations

import socket

from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import raw_exchange

SHORT = {"request_head_timeout_seconds": 0.3, "request_body_timeout_seconds": 0.3, "keep_alive_timeout_seconds": 0.3}


def errors(proxy: RunningProxy, route: str, code: str) -> float | None:
    # Read in process: the refusal is counted before it is written, so the answer read means it counted.
    registry = proxy.app.metrics.registry
    return registry.get_sample_value("portkey_user_proxy_errors_total", {"route": route, "code": code})


def exchange_until_closed(proxy: RunningProxy, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_head_over_the_bound_counts_as_request_header_too_large(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(max_request_head_bytes=4096)

    answer = raw_exchange(proxy.server.port, b"GET /v1/models HTTP/1.1\r\nx-padding: " + b"a" * 8192)

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert errors(proxy, "other", "request_header_too_large") == 1


def test_a_head_that_stops_arriving_counts_as_request_timeout(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(**SHORT)

    answer = exchange_until_closed(proxy, b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n")

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert errors(proxy, "other", "request_timeout") == 1  # the path is not known before the head ends


def test_a_body_that_stops_arriving_counts_under_its_route(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(**SHORT)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"

    answer = exchange_until_closed(proxy, head + b"content-length: 100\r\n\r\n" + b'{"user": ')

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert errors(proxy, "chat_completions", "request_timeout") == 1


def test_a_connection_over_the_cap_counts_as_too_many_connections(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(max_connections=1)
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as held:
        held.sendall(b"GET /healthz HTTP/1.1\r\nhost: proxy\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200 ")  # answered: the server holds it

        answer = raw_exchange(proxy.server.port, b"")

    assert answer.startswith(b"HTTP/1.1 503 ")
    assert errors(proxy, "other", "too_many_connections") == 1
