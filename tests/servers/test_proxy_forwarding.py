"""What crosses the proxy: every method and path to PORTKEY_URL, bodies intact, headers by policy."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_reaches_the_same_path_and_query(proxy: RunningProxy, upstream: Upstream, method: str) -> None:
    response = httpx.request(method, proxy.url + "/v1/some/route?limit=5&q=a%20b", json={"user": USER_ID})

    assert response.status_code == 200
    assert (upstream.last.method, upstream.last.path, upstream.last.query) == (
        method,
        "/v1/some/route",
        "limit=5&q=a%20b",
    )


def test_a_body_less_get_stays_body_less(proxy: RunningProxy, upstream: Upstream) -> None:
    httpx.get(proxy.url + "/v1/models", headers={"x-librechat-user-id": USER_ID})

    assert upstream.last.body == b""
    assert "transfer-encoding" not in upstream.last.headers
    assert upstream.last.metadata == {"_user": EMAIL}


def test_the_request_cannot_choose_the_upstream_host(proxy: RunningProxy, upstream: Upstream) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])
    request = (
        b"GET http://evil.example/v1/models HTTP/1.1\r\n"
        b"Host: evil.example\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        reply = client.recv(65536)

    assert reply.startswith(b"HTTP/1.1 200")
    assert upstream.last.path == "/v1/models"
    assert upstream.last.headers["host"] == upstream.url.removeprefix("http://")


def test_portkey_url_with_a_path_prefix_is_kept(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(portkey_url=upstream.url + "/gateway/")

    httpx.get(proxy.url + "/v1/models")

    assert upstream.last.path == "/gateway/v1/models"


def test_hop_by_hop_headers_stay_behind(proxy: RunningProxy, upstream: Upstream) -> None:
    headers = {"Connection": "x-private", "X-Private": "hop", "Keep-Alive": "timeout=5", "TE": "trailers"}

    httpx.get(proxy.url + "/v1/models", headers={**headers, "x-portkey-trace-id": "mine"})

    for name in ("x-private", "keep-alive", "te"):
        assert name not in upstream.last.headers
    assert "connection" not in upstream.last.headers  # HTTP/1.1 keeps the proxy's connection alive unasked
    assert upstream.last.headers["x-portkey-trace-id"] == "mine"


def test_response_headers_come_back_once(proxy: RunningProxy, upstream: Upstream) -> None:
    response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID, "messages": []})

    assert response.headers["x-portkey-trace-id"] == "trace-123"
    assert len(response.headers.get_list("server")) == 1
    assert len(response.headers.get_list("date")) == 1


def test_upstream_cookies_are_never_replayed_to_other_requests(proxy: RunningProxy, upstream: Upstream) -> None:
    first = httpx.get(proxy.url + "/set-cookie")
    httpx.get(proxy.url + "/v1/models")

    assert first.headers["set-cookie"].startswith("session=from-upstream")
    assert "cookie" not in upstream.last.headers


def test_an_8_mib_json_body_arrives_intact(proxy: RunningProxy, upstream: Upstream) -> None:
    body = b'{"user": "%s", "input": "%s"}' % (USER_ID.encode(), os.urandom(4 * 1024 * 1024).hex().encode())

    response = httpx.post(proxy.url + "/v1/embeddings", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 200
    assert upstream.last.body == body
    assert upstream.last.metadata["_user"] == EMAIL


def test_a_multipart_upload_streams_through_intact(proxy: RunningProxy, upstream: Upstream) -> None:
    audio = os.urandom(3 * 1024 * 1024)

    response = httpx.post(
        proxy.url + "/v1/audio/transcriptions",
        files={"file": ("speech.mp3", audio, "audio/mpeg")},
        data={"model": "whisper-1"},
        headers={"x-librechat-user-id": USER_ID},
    )

    assert response.status_code == 200
    assert audio in upstream.last.body
    assert upstream.last.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(upstream.last.headers["content-length"]) == len(upstream.last.body)
    assert upstream.last.metadata["_user"] == EMAIL


def test_a_chunked_upload_streams_through_intact(proxy: RunningProxy, upstream: Upstream) -> None:
    parts = [os.urandom(64 * 1024) for _ in range(8)]

    response = httpx.post(proxy.url + "/v1/files", content=iter(parts), headers={"content-type": "application/zip"})

    assert response.status_code == 200
    assert upstream.last.body == b"".join(parts)


def test_a_json_body_over_the_limit_is_refused(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_body_bytes=64 * 1024)
    body = b'{"input": "%s"}' % (b"x" * 100 * 1024)

    response = httpx.post(proxy.url + "/v1/embeddings", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert "MAX_REQUEST_BODY_BYTES" in response.json()["error"]["message"]
    assert upstream.received == []


def test_invalid_json_is_forwarded_unchanged_for_the_upstream_to_judge(proxy: RunningProxy, upstream: Upstream) -> None:
    body = b'{"model": "gpt-4o", "messages": [unterminated'

    httpx.post(proxy.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})

    assert upstream.last.body == body
