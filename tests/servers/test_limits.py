"""Body size for every kind of body, and the number of requests in flight upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from types import TracebackType

import httpx
import pytest

from portkey_user_proxy.errors import ProxyError
from portkey_user_proxy.headers import RequestHeaders
from portkey_user_proxy.inbound.limits import UpstreamSlots, capped, check_declared_length
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, raw_exchange

LIMIT = 1024
USER_ID = "6651f0c2a1b2c3d4e5f60718"


# --- Body size ------------------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_up_front() -> None:
    with pytest.raises(ProxyError) as refused:
        check_declared_length(RequestHeaders(content_length=b"1025"), LIMIT)

    assert refused.value.status == 413
    assert "MAX_REQUEST_BODY_BYTES" in refused.value.message
    assert (b"connection", b"close") in refused.value.headers
    check_declared_length(RequestHeaders(content_length=b"1024"), LIMIT)
    check_declared_length(RequestHeaders(chunked=True), LIMIT)


def test_a_stream_is_cut_off_past_the_limit() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 500

    async def read_all() -> list[bytes]:
        return [chunk async for chunk in capped(chunks(), LIMIT)]

    with pytest.raises(ProxyError) as refused:
        asyncio.run(read_all())
    assert refused.value.status == 413


@pytest.mark.parametrize("content_type", [b"application/json", b"multipart/form-data; boundary=x", b"audio/mpeg"])
def test_413_comes_before_the_body_is_read(make_proxy: MakeProxy, upstream: Upstream, content_type: bytes) -> None:
    proxy = make_proxy(max_request_body_bytes=LIMIT)
    # Only the head is sent: an answer proves the proxy did not wait for the body.
    head = b"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: p\r\ncontent-type: " + content_type
    answer = raw_exchange(proxy.server.port, head + b"\r\ncontent-length: 5000000\r\n\r\n")

    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in status.lower()
    assert b'"code":"request_too_large"' in body
    assert upstream.received == []
    assert proxy.directory.lookups == 0


def test_a_chunked_upload_past_the_limit_is_cut_off_with_413(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_body_bytes=LIMIT)
    head = b"POST /v1/files HTTP/1.1\r\nhost: p\r\ncontent-type: application/octet-stream\r\n"
    chunk = b"258\r\n" + b"x" * 600 + b"\r\n"
    # Two chunks of 600 bytes cross the limit; the body's end never comes.
    answer = raw_exchange(proxy.server.port, head + b"transfer-encoding: chunked\r\n\r\n" + chunk + chunk)

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"MAX_REQUEST_BODY_BYTES" in answer
    assert all(len(received.body) < 1200 for received in upstream.received)
    # The proxy is unharmed: the next upload under the limit goes through whole.
    response = httpx.post(proxy.url + "/v1/files", content=iter([b"y" * 600]), timeout=10)
    assert response.status_code == 200
    assert upstream.last.body == b"y" * 600


def test_a_chunked_json_body_past_the_limit_gets_413(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(max_request_body_bytes=LIMIT)
    body = b'{"user": "' + USER_ID.encode() + b'", "pad": "' + b"x" * 2000 + b'"}'

    response = httpx.post(
        proxy.url + "/v1/chat/completions",
        content=iter([body]),
        headers={"content-type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 413
    assert upstream.received == []


# --- Requests in flight upstream ------------------------------------------------------------------


class ObservedSlots(UpstreamSlots):
    """The proxy's slots, letting a test wait until every request has left them."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._changed = threading.Condition()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._changed:
            super().__exit__(exc_type, exc, tb)
            self._changed.notify_all()

    def wait_until_idle(self) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.active == 0, timeout=10)


def limited_proxy(make_proxy: MakeProxy, limit: int) -> tuple[RunningProxy, ObservedSlots]:
    proxy = make_proxy(max_concurrent_upstream_requests=limit)
    slots = ObservedSlots(limit)
    proxy.app.forwarder._upstream_slots = slots
    return proxy, slots


def test_slots_count_and_refuse_over_the_limit() -> None:
    slots = UpstreamSlots(2)
    with slots, slots:
        assert slots.active == 2
        with pytest.raises(ProxyError) as refused, slots:
            pass
    assert slots.active == 0
    assert refused.value.status == 503
    assert refused.value.code == "proxy_busy"
    assert (b"retry-after", b"1") in refused.value.headers


def test_no_limit_by_default() -> None:
    slots = UpstreamSlots(0)
    with slots, slots, slots:
        assert slots.active == 3


def test_a_request_over_the_limit_gets_503_with_retry_after(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy, slots = limited_proxy(make_proxy, 1)
    with httpx.Client(base_url=proxy.url, timeout=10) as client, client.stream("GET", "/gated-stream") as held:
        chunks = held.iter_raw()
        assert b"data:" in next(chunks)  # the one slot is taken while this stream is open

        busy = httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID}, timeout=10)

        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "proxy_busy"
        assert "MAX_CONCURRENT_UPSTREAM_REQUESTS" in busy.json()["error"]["message"]
        for gate in upstream.gates:
            gate.set()
        assert b"[DONE]" in b"".join(chunks)

    assert slots.wait_until_idle()
    assert httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID}, timeout=10).status_code == 200


def test_failed_and_abandoned_requests_give_their_slot_back(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy, slots = limited_proxy(make_proxy, 1)

    assert httpx.get(proxy.url + "/status/500", timeout=10).status_code == 500
    assert slots.wait_until_idle()
    with httpx.Client(base_url=proxy.url, timeout=10) as client, client.stream("GET", "/endless-stream") as stream:
        next(stream.iter_raw())
    assert upstream.stream_cancelled.wait(10)
    assert slots.wait_until_idle()

    assert httpx.get(proxy.url + "/anything", timeout=10).status_code == 200


def test_refused_requests_never_reach_the_upstream(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy, _ = limited_proxy(make_proxy, 1)
    with httpx.Client(base_url=proxy.url, timeout=10) as client, client.stream("GET", "/gated-stream") as held:
        chunks = held.iter_raw()
        next(chunks)
        for _ in range(3):
            assert httpx.get(proxy.url + "/refused", timeout=10).status_code == 503
        for gate in upstream.gates:
            gate.set()
        assert b"[DONE]" in b"".join(chunks)

    assert [received.path for received in upstream.received] == ["/gated-stream"]
