"""The upstream client without a socket: what it sends, and what each transport failure tells the client.

respx stands in for Portkey behind the client's transport; the transport rules themselves are tested
against scripted raw-socket peers (tests/servers/test_transport.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from portkey_user_proxy.answers import error_before_response
from portkey_user_proxy.upstream.client import UpstreamClient, UpstreamPolicy, UpstreamRequest
from portkey_user_proxy.upstream.transport import WireRequest

URL = httpx.URL("http://portkey.test/v1/chat/completions")
POLICY = UpstreamPolicy.for_target("http://portkey.test", connect_timeout=2, read_timeout=30)


def _client(router: respx.MockRouter) -> UpstreamClient:
    return UpstreamClient(httpx.MockTransport(router.async_handler), httpx.Timeout(5, read=30))


async def _send(client: UpstreamClient, request: UpstreamRequest) -> bytes:
    """The response's body, read whole."""
    response = await client.send(request)
    body = b"".join([chunk async for chunk in response.aiter_raw()])
    await response.aclose()
    return body


def test_a_request_carries_only_the_headers_it_was_given() -> None:
    router = respx.MockRouter(assert_all_called=True)
    route = router.post(URL).respond(200, json={"ok": True})
    client = _client(router)

    body = asyncio.run(_send(client, UpstreamRequest("POST", URL, [(b"authorization", b"Bearer k")], b"{}")))

    sent = route.calls.last.request
    assert sorted(sent.headers.keys()) == ["authorization", "content-length", "host"]
    assert sent.extensions["timeout"] == {"connect": 5, "read": 30, "write": 5, "pool": 5}
    assert json.loads(body) == {"ok": True}


def test_a_set_cookie_is_never_replayed_on_the_next_request() -> None:
    router = respx.MockRouter()
    route = router.get(URL).respond(200, headers={"set-cookie": "session=alice"})
    client = _client(router)

    for _ in range(2):
        asyncio.run(_send(client, UpstreamRequest("GET", URL, [], None)))

    assert "cookie" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (httpx.ConnectTimeout("timed out"), 502, "upstream_unreachable"),
        (httpx.ConnectError("refused"), 502, "upstream_unreachable"),
        (httpx.ProxyError("407"), 502, "upstream_unreachable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.WriteTimeout("slow"), 504, "upstream_timeout"),
        (httpx.PoolTimeout("busy"), 503, "upstream_busy"),
        (httpx.RemoteProtocolError("bad"), 502, "upstream_error"),
    ],
)
def test_each_failure_before_a_response_has_its_own_answer(failure: httpx.HTTPError, status: int, code: str) -> None:
    router = respx.MockRouter()
    router.post(URL).mock(side_effect=failure)
    client = _client(router)

    with pytest.raises(httpx.HTTPError) as raised:
        asyncio.run(_send(client, UpstreamRequest("POST", URL, [], b"{}")))
    error = error_before_response(raised.value, POLICY)

    assert (error.status, error.code) == (status, code)
    assert error.message  # a sentence for LibreChat to show, never the exception's repr


async def _parts() -> AsyncIterator[bytes]:
    yield b"part"


@pytest.mark.parametrize(
    ("method", "headers", "content"),
    [
        ("POST", [(b"authorization", b"Bearer k"), (b"x-portkey-metadata", b'{"_user":"a"}')], b'{"user":"x"}'),
        ("POST", [], b""),
        ("POST", [], None),
        ("GET", [(b"accept", b"*/*")], None),
        ("DELETE", [], None),
        ("POST", [(b"content-length", b"4")], "streamed"),
        ("POST", [(b"content-type", b"audio/wav")], "streamed"),
        ("PUT", [(b"transfer-encoding", b"chunked")], b"raw"),
    ],
)
def test_the_lean_transport_frames_a_request_exactly_as_an_httpx_request(
    method: str, headers: list[tuple[bytes, bytes]], content: bytes | str | None
) -> None:
    body = _parts() if content == "streamed" else content
    assert not isinstance(body, str)

    ours = WireRequest.prepare(method, URL, headers, body, {})
    theirs = WireRequest.of_httpx(httpx.Request(method, URL, headers=headers, content=body))

    assert ours.headers == theirs.headers  # the same lines, in the same order, spelt the same
    assert ours.chunked == theirs.chunked
