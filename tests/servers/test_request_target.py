"""The upstream target is PORTKEY_URL's path + the client's raw path, byte for byte: never resolved above it."""

from __future__ import annotations

import httpx
import pytest

from portkey_user_proxy.errors import ProxyError
from portkey_user_proxy.inbound.target import has_dot_segment, upstream_url
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream, raw_exchange

BASE = httpx.URL("http://gw/portkey")
DOTTED = [
    b"/v1/../../../admin/secret",
    b"/v1/./models",
    b"/v1/..",
    b"/v1/%2e%2e/%2E%2E/admin",
    b"/v1/.%2e/admin",
    b"/v1/..%2fadmin",
    b"/v1/..%5cadmin",
    b"/v1/..\\admin",
    b"/..",
]


@pytest.mark.parametrize("path", DOTTED)
def test_dot_segments_are_refused_in_every_spelling(path: bytes) -> None:
    assert has_dot_segment(path)
    with pytest.raises(ProxyError) as refused:
        upstream_url(BASE, b"/portkey", path, b"")

    assert refused.value.status == 400
    assert refused.value.code == "invalid_request_target"


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/chat/completions",
        b"/v1/files/file-abc.jsonl",
        b"/v1/a..b/...",
        b"/v1/.well-known",
        b"/v1/a%2Fb",
        b"/v1/~x",
    ],
)
def test_other_paths_go_out_byte_for_byte(path: bytes) -> None:
    url = upstream_url(BASE, b"/portkey", path, b"q=a%20b&x=..")

    assert url.raw_path == b"/portkey" + path + b"?q=a%20b&x=.."
    assert (url.host, url.port) == ("gw", None)


@pytest.mark.parametrize("path", [b'/v1/a"b', b"/v1/a{b}", b"/v1/a<b>", b"/v1/caf\xc3\xa9"])
def test_a_path_httpx_would_rewrite_is_refused_rather_than_changed(path: bytes) -> None:
    with pytest.raises(ProxyError) as refused:
        upstream_url(BASE, b"/portkey", path, b"")

    assert refused.value.status == 400


def test_dot_segments_never_leave_portkey_urls_path(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(portkey_url=upstream.url + "/portkey")

    for path in (b"/v1/../../../admin/secret", b"/v1/%2e%2e/%2e%2e/admin/secret", b"/v1/./models"):
        answer = raw_exchange(proxy.server.port, b"GET " + path + b" HTTP/1.1\r\nhost: p\r\nconnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
        assert b'"code":"invalid_request_target"' in answer

    assert upstream.received == []
    assert httpx.get(proxy.url + "/v1/models", timeout=10).status_code == 200
    assert upstream.last.path == "/portkey/v1/models"
