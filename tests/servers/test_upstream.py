"""The proxy's upstream client end to end: what reaches Portkey, what a client sees when Portkey misbehaves,
and the way out through an HTTP proxy."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support.proxy import MakeProxy, scrape
from tests.support.scripted_upstream import Script, ScriptedUpstream, forward_proxy, ok, read_request, reset
from tests.support.servers import Upstream, raw_exchange, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"
CHAT = {"user": USER_ID, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def serve_script() -> Iterator[type[ScriptedUpstream]]:
    started: list[ScriptedUpstream] = []

    class Started(ScriptedUpstream):
        def __init__(self, script: Script) -> None:
            super().__init__(script)
            started.append(self)
            self.start()

    yield Started
    for upstream in started:
        upstream.stop()


# Rule 1: a request that may have reached Portkey is never sent again, and the client learns it failed.


def test_a_request_the_upstream_dropped_after_reading_is_a_502_sent_once(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    bodies: list[bytes] = []

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            bodies.append(request[1])
            if len(bodies) == 2:
                return  # the whole request arrived; the connection drops before an answer
            writer.write(ok(b'{"id":"chatcmpl-1"}'))

    upstream = serve_script(script)
    proxy = make_proxy(portkey_url=upstream.url)
    caplog.set_level(logging.INFO, logger="portkey_user_proxy.access")

    with httpx.Client(base_url=proxy.url) as client:
        first = client.post("/v1/chat/completions", json=CHAT)
        second = client.post("/v1/chat/completions", json=CHAT)
    samples = scrape(proxy)
    proxy.server.stop()  # the access line is written when the request ends; stopping waits for that

    assert first.status_code == 200
    assert second.status_code == 502
    assert second.json()["error"]["code"] == "upstream_error"
    assert len(bodies) == 2  # not three: the dropped request was not sent again
    assert upstream.connections == 1
    route = ("route", "chat_completions")
    assert samples[("portkey_user_proxy_requests_total", (route, ("status", "502")))] == 1
    assert samples[("portkey_user_proxy_errors_total", (("code", "upstream_error"), route))] == 1
    access = [r.getMessage() for r in caplog.records if r.name == "portkey_user_proxy.access"]
    assert access[-1].startswith('"POST /v1/chat/completions" 502 ')


# Rules 3 and 4 through the proxy: the client sees a 502 or a truncated body, never a complete answer.


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nx-endless: " + b"a" * (1 << 20) + b"\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
    ids=["1 MiB head", "101", "interim only", "garbage"],
)
def test_an_upstream_answer_that_is_not_a_response_is_a_502(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream], answer: bytes
) -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    proxy = make_proxy(portkey_url=serve_script(script).url)

    response = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_a_reset_in_a_body_delimited_by_close_reaches_the_client_truncated(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream]
) -> None:
    head_relayed = threading.Event()

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n")
        await asyncio.to_thread(head_relayed.wait, 10)
        writer.write(b"data: 2\n\n")
        await writer.drain()
        reset(writer)

    proxy = make_proxy(portkey_url=serve_script(script).url)

    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=CHAT) as response:
        head_relayed.set()
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()  # the proxy ends its chunked body without the last chunk


# What reaches Portkey: the client's headers minus hop-by-hop ones, plus the proxy's own; nothing of httpx's.


def gzip_if_asked(heads: list[bytes]) -> Script:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            heads.append(head)
            if b"\r\naccept-encoding: gzip" in head.lower():
                body = gzip.compress(b'{"compressed":true}')
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body))
                writer.write(body)
            else:
                writer.write(ok(b'{"compressed":false}'))

    return script


def test_the_upstream_request_carries_no_header_the_client_did_not_send(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream]
) -> None:
    heads: list[bytes] = []
    proxy = make_proxy(portkey_url=serve_script(gzip_if_asked(heads)).url)

    answer = raw_exchange(
        proxy.server.port, b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-custom: 1\r\nconnection: close\r\n\r\n"
    )

    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"GET /v1/models HTTP/1.1"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:] if line]
    assert names == [b"host", b"x-custom", b"x-request-id"]  # no accept, accept-encoding, user-agent, connection
    assert b"content-encoding" not in answer.lower()
    assert answer.endswith(b'{"compressed":false}')


def test_gzip_reaches_only_a_client_that_asked_for_it(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream]
) -> None:
    heads: list[bytes] = []
    proxy = make_proxy(portkey_url=serve_script(gzip_if_asked(heads)).url)

    with httpx.Client(base_url=proxy.url) as client:
        asked = client.get("/v1/models", headers={"accept-encoding": "gzip"})
        plain = client.get("/v1/models", headers={"accept-encoding": "identity"})

    assert asked.headers["content-encoding"] == "gzip"
    assert asked.json() == {"compressed": True}
    assert "content-encoding" not in plain.headers
    assert plain.json() == {"compressed": False}


# Rule 5: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY, as for any httpx client.


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_requests_go_through_the_proxy_the_environment_names(
    make_proxy: MakeProxy,
    upstream: Upstream,
    serve_script: type[ScriptedUpstream],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    request_lines: list[bytes] = []
    monkeypatch.setenv(variable, serve_script(forward_proxy(request_lines)).url)
    proxy = make_proxy()

    with httpx.Client(base_url=proxy.url, trust_env=False) as client:
        response = client.post("/v1/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert request_lines == [f"POST {upstream.url}/v1/chat/completions HTTP/1.1".encode()]
    assert upstream.last.metadata["_user"] == "timmanik@email.com"


def test_no_proxy_sends_the_upstream_direct(
    make_proxy: MakeProxy, upstream: Upstream, serve_script: type[ScriptedUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_lines: list[bytes] = []
    monkeypatch.setenv("HTTP_PROXY", serve_script(forward_proxy(request_lines)).url)
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    proxy = make_proxy()

    with httpx.Client(base_url=proxy.url, trust_env=False) as client:
        response = client.post("/v1/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert request_lines == []
    assert upstream.last.path == "/v1/chat/completions"


def test_an_unreachable_proxy_is_a_502_that_names_the_proxy_settings_but_not_their_secrets(
    make_proxy: MakeProxy, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://user:proxy-secret@127.0.0.1:{unused_port()}")
    proxy = make_proxy()

    with httpx.Client(base_url=proxy.url, trust_env=False) as client:
        response = client.post("/v1/chat/completions", json=CHAT)

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert "HTTP(S)_PROXY" in error["message"]
    assert "proxy-secret" not in response.text
    assert upstream.received == []


def test_a_proxy_that_refuses_the_tunnel_is_a_502_that_names_the_proxy_settings(
    make_proxy: MakeProxy, serve_script: type[ScriptedUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refusing_proxy(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")

    monkeypatch.setenv("HTTPS_PROXY", serve_script(refusing_proxy).url)
    proxy = make_proxy(portkey_url=f"https://127.0.0.1:{unused_port()}")

    with httpx.Client(base_url=proxy.url, trust_env=False) as client:
        response = client.post("/v1/chat/completions", json=CHAT)

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert "proxy refused" in error["message"]
    assert "HTTP(S)_PROXY" in error["message"]
