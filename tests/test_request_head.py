"""MAX_REQUEST_HEAD_BYTES: the server refuses a request line plus headers over the bound while reading them."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from portkey_user_proxy import cli
from portkey_user_proxy.request_head import server_options
from portkey_user_proxy.settings import load_settings
from tests.conftest import MakeProxy
from tests.servers import Upstream, raw_exchange

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


def test_heads_within_the_bound_pass_one_after_another_on_one_connection(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)
    head = request_head(b"/v1/models", 3000)  # two of these together are over the bound: it counts per request

    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(head)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]

    assert len(upstream.received) == 2


def test_a_large_body_is_no_head(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_head_bytes=LIMIT)

    response = httpx.post(proxy.url + "/v1/files", content=b"z" * (1 << 20), timeout=10)

    assert response.status_code == 200
    assert len(upstream.last.body) == 1 << 20


def test_serve_runs_uvicorn_with_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **options: ran.update(options))

    cli._serve(load_settings(_env_file=None, max_request_head_bytes=8192), "127.0.0.1", 8080)

    assert ran["http"] == "portkey_user_proxy.request_head:BoundedHttpToolsProtocol"
    assert ran["h11_max_incomplete_event_size"] == 8192
    assert server_options(8192).items() <= ran.items()
