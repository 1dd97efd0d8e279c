"""`x-request-id`: kept when the client sends one, made up when it does not, returned either way."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, raw_exchange, unused_port


def raw_get(proxy: RunningProxy, request_id: bytes) -> list[bytes]:
    """GET /v1/models with `request_id` as its x-request-id bytes; the x-request-id values of the response."""
    request = (
        b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-request-id: " + request_id + b"\r\nconnection: close\r\n\r\n"
    )
    head = raw_exchange(proxy.server.port, request).partition(b"\r\n\r\n")[0]
    return [
        line.partition(b":")[2].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")
    ]


def test_a_client_request_id_reaches_the_upstream_and_comes_back(proxy: RunningProxy, upstream: Upstream) -> None:
    response = httpx.get(proxy.url + "/v1/models", headers={"x-request-id": "req-42"})

    assert upstream.last.headers["x-request-id"] == "req-42"
    assert response.headers.get_list("x-request-id") == ["req-42"]


def test_a_missing_request_id_is_generated_once_for_both_sides(proxy: RunningProxy, upstream: Upstream) -> None:
    first = httpx.get(proxy.url + "/v1/models")
    first_sent = upstream.last.headers["x-request-id"]
    second = httpx.get(proxy.url + "/v1/models")

    assert first.headers["x-request-id"] == first_sent
    assert len(first_sent) >= 16
    assert second.headers["x-request-id"] != first_sent


def test_proxy_made_errors_carry_the_request_id(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(portkey_url=f"http://127.0.0.1:{unused_port()}")

    response = httpx.get(proxy.url + "/v1/models", headers={"x-request-id": "req-err"})

    assert response.status_code == 502
    assert response.headers["x-request-id"] == "req-err"


@pytest.mark.parametrize(
    "sent",
    [b"\x80\xff", "r\u00e9q".encode(), b"a" * 201, b"two words", b"tab\there"],
    ids=["not-utf8", "non-ascii", "too-long", "space", "tab"],
)
def test_a_request_id_that_is_not_short_visible_ascii_is_replaced_on_both_sides(
    proxy: RunningProxy, upstream: Upstream, sent: bytes
) -> None:
    returned = raw_get(proxy, sent)

    sent_upstream = [value for name, value in upstream.last.header_list if name == "x-request-id"]
    assert len(returned) == 1
    assert re.fullmatch(rb"[0-9a-f]{32}", returned[0])
    assert sent_upstream == [returned[0].decode()]


def test_a_request_id_of_200_visible_characters_is_kept(proxy: RunningProxy, upstream: Upstream) -> None:
    sent = b"req-" + bytes(range(0x21, 0x7F)) + b"x" * 102

    returned = raw_get(proxy, sent)

    assert len(sent) == 200
    assert returned == [sent]
    assert [value for name, value in upstream.last.header_list if name == "x-request-id"] == [sent.decode()]
