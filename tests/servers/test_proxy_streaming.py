"""Responses stream through as they arrive, and a client that leaves stops the upstream at once."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading

import httpx
import pytest

from portkey_user_proxy.observability.logs import access_logger
from tests.support.mongo import StandInMongo, needs_stand_in
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"


def test_sse_chunks_reach_the_client_before_the_upstream_sends_the_next(
    proxy: RunningProxy, upstream: Upstream
) -> None:
    # Chunk N+1 leaves the upstream only after the client has received chunk N through the proxy:
    # a proxy that buffered would hold chunk N back, and the read below would time out.
    with httpx.stream("POST", proxy.url + "/gated-stream", json={"user": USER_ID}, timeout=5) as response:
        events = response.iter_lines()
        for gate in upstream.gates[1:]:
            assert next(event for event in events if event.startswith("data:"))
            gate.set()
        remaining = [event for event in events if event.startswith("data:")]

    assert remaining[-1] == "data: [DONE]"
    assert response.headers["content-type"] == "text/event-stream"


def test_a_client_disconnect_cancels_the_upstream_stream(proxy: RunningProxy, upstream: Upstream) -> None:
    with httpx.stream("POST", proxy.url + "/endless-stream", json={"user": USER_ID}, timeout=5) as response:
        assert next(response.iter_lines()).startswith("data:")
        assert upstream.stream_started.wait(5)
    # Leaving the block closed the connection in the middle of the stream.

    assert upstream.stream_cancelled.wait(5), "the upstream stream was still open after the client left"


class _ClientClosed(logging.Handler):
    """Set once the access log reports a request whose client left (499)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "access", {}).get("status") == 499:
            self.seen.set()


@needs_stand_in()
def test_a_client_that_leaves_while_its_user_is_looked_up_is_never_forwarded(
    make_proxy: MakeProxy, upstream: Upstream, own_mongo: StandInMongo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=access_logger.name)
    closed = _ClientClosed()
    access_logger.addHandler(closed)
    own_mongo.gate = threading.Event()  # MongoDB answers once the client has gone
    proxy = make_proxy(mongo_uri=own_mongo.uri, user_lookup_timeout_seconds=20)
    body = json.dumps({"user": USER_ID, "messages": []}).encode()
    try:
        with socket.create_connection(("127.0.0.1", proxy.server.port)) as client:
            head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
            client.sendall(head + b"content-length: %d\r\n\r\n%s" % (len(body), body))
            assert proxy.directory.wait_for_lookups(1)
        # The request ends as soon as its client is gone, not once MongoDB has answered.
        assert closed.seen.wait(10), "the request went on after its client had left"
    finally:
        own_mongo.gate.set()
        access_logger.removeHandler(closed)

    assert upstream.received == []


def test_streaming_chat_completions_ask_for_usage(proxy: RunningProxy, upstream: Upstream) -> None:
    body = {"model": "gpt-4o-mini", "stream": True, "user": USER_ID, "messages": []}

    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, timeout=5) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]

    assert upstream.last.json()["stream_options"] == {"include_usage": True}
    assert json.loads(lines[-2].removeprefix("data: "))["usage"] == {"total_tokens": 6}


def test_stream_usage_can_be_switched_off(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(include_stream_usage=False)
    sent = json.dumps({"model": "m", "stream": True, "user": USER_ID}).encode()

    httpx.post(proxy.url + "/v1/chat/completions", content=sent, headers={"content-type": "application/json"})

    assert upstream.last.body == sent


def test_gzip_responses_pass_through_compressed(proxy: RunningProxy, upstream: Upstream) -> None:
    with httpx.stream("GET", proxy.url + "/gzip", headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw)) == {"compressed": True}
    assert upstream.last.headers["accept-encoding"] == "gzip"
