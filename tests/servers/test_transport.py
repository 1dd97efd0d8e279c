"""The lean HTTP/1.1 transport against scripted loopback servers that misbehave on purpose.

First what a transport must do (keep-alive, request heads, bodies both ways); then its rules, as
written at the top of upstream/transport.py, each against an upstream that breaks exactly that rule's
assumption. Rule 1 (never resend what may have arrived) is also held end to end in test_upstream.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import h11
import httpx
import pytest

from portkey_user_proxy.upstream.transport import MAX_RESPONSE_HEAD_BYTES, LeanTransport
from tests.support.scripted_upstream import ok, read_request, reset, run


def test_a_kept_alive_connection_serves_the_next_request() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            writer.write(ok(request[1][::-1]))

    async def scenario(client: httpx.AsyncClient, url: str) -> list[str]:
        return [(await client.post(f"{url}/echo?n={n}", content=b"abc%d" % n)).text for n in range(3)]

    texts, connections = run(script, scenario)
    assert texts == ["0cba", "1cba", "2cba"]
    assert connections == 1


def test_request_head_carries_the_callers_headers_target_and_host() -> None:
    seen: list[h11.Request] = []

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        seen.append(request[0])
        writer.write(ok())

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        await client.post(f"{url}/v1/a%2Fb?x=1", headers={"x-portkey-metadata": '{"_user":"a"}'}, content=b"{}")

    run(script, scenario)
    assert seen[0].target == b"/v1/a%2Fb?x=1"
    headers = dict(seen[0].headers)
    assert headers[b"x-portkey-metadata"] == b'{"_user":"a"}'
    assert headers[b"host"].startswith(b"127.0.0.1:")


def test_connections_idle_past_their_keep_alive_are_closed_without_a_new_request() -> None:
    closed = asyncio.Event()

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        if await reader.read() == b"":
            closed.set()

    async def scenario(client: httpx.AsyncClient, url: str) -> bool:
        await client.post(url, content=b"x")
        await asyncio.wait_for(closed.wait(), 2)
        return closed.is_set()

    was_closed, _ = run(script, scenario, LeanTransport(keepalive_expiry=0.1))
    assert was_closed


def test_a_streamed_request_body_goes_out_chunked_and_whole() -> None:
    received: list[bytes] = []

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        received.append(request[1])
        writer.write(ok())

    async def parts() -> AsyncIterator[bytes]:
        for n in range(50):
            yield bytes([65 + n % 26]) * 10_000

    async def scenario(client: httpx.AsyncClient, url: str) -> int:
        return (await client.post(f"{url}/upload", content=parts())).status_code

    status, _ = run(script, scenario)
    assert status == 200
    assert received[0] == b"".join(bytes([65 + n % 26]) * 10_000 for n in range(50))


def test_a_request_on_a_kept_alive_connection_the_server_closes_is_never_sent_again() -> None:
    received: list[bytes] = []

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            received.append(request[1])
            if request[1] == b"2":
                return  # read the whole request, then drop the connection: it may have been acted on
            writer.write(ok(b"first"))

    async def scenario(client: httpx.AsyncClient, url: str) -> str:
        first = (await client.post(url, content=b"1")).text
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"2")
        return first

    first, connections = run(script, scenario)
    assert first == "first"
    assert received == [b"1", b"2"]  # a chat completion sent twice is charged twice
    assert connections == 1


def test_a_pooled_connection_the_server_closed_while_idle_is_passed_over() -> None:
    closed = asyncio.Event()

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first" if number == 1 else b"second"))
        if number == 1:
            writer.close()
            await writer.wait_closed()
            closed.set()

    async def scenario(client: httpx.AsyncClient, url: str) -> list[str]:
        first = (await client.post(url, content=b"1")).text
        await closed.wait()
        return [first, (await client.post(url, content=b"2")).text]

    texts, connections = run(script, scenario)
    assert texts == ["first", "second"]
    assert connections == 2


def test_a_new_connection_closed_without_an_answer_is_a_protocol_error() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    run(script, scenario)


def test_a_body_cut_short_is_a_protocol_error_and_the_connection_is_not_reused() -> None:
    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf" if number == 1 else ok())

    async def scenario(client: httpx.AsyncClient, url: str) -> str:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")
        return (await client.post(url, content=b"x")).text

    text, connections = run(script, scenario)
    assert text == "hello"
    assert connections == 2


def test_a_body_ended_by_the_connections_close_is_read_whole() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")

    async def scenario(client: httpx.AsyncClient, url: str) -> str:
        return (await client.post(url, content=b"x")).text

    text, _ = run(script, scenario)
    assert text == "until the end"


def test_an_interim_response_is_skipped_for_the_final_one() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))

    async def scenario(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
        response = await client.post(url, content=b"x")
        return response.status_code, response.text

    result, _ = run(script, scenario)
    assert result == (200, "final")


def test_a_chunked_response_streams_through_with_its_framing_removed() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for n in range(3):
            payload = b"data: %d\n\n" % n
            writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")

    async def scenario(client: httpx.AsyncClient, url: str) -> list[bytes]:
        async with client.stream("POST", url, content=b"x") as response:
            return [chunk async for chunk in response.aiter_raw()]

    chunks, _ = run(script, scenario)
    assert chunks == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


def test_a_large_body_read_slowly_arrives_intact() -> None:
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB: reading pauses and resumes on the way

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(body))
        await writer.drain()

    async def scenario(client: httpx.AsyncClient, url: str) -> bytes:
        parts = []
        async with client.stream("POST", url, content=b"x") as response:
            async for chunk in response.aiter_raw():
                parts.append(chunk)
                await asyncio.sleep(0.001)
        return b"".join(parts)

    received, _ = run(script, scenario)
    assert received == body


def test_no_response_within_the_read_timeout_is_a_read_timeout() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"x")

    run(script, scenario, read=0.2)


def test_nothing_listening_is_a_connect_error() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/")

    asyncio.run(scenario())


# --- The rules ------------------------------------------------------------------------------------

# Rule 2: only clean connections return to the pool.


def test_bytes_arriving_on_an_idle_connection_are_never_the_next_requests_answer() -> None:
    stray_sent = asyncio.Event()

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first" if number == 1 else b"second"))
        if number == 1:
            await writer.drain()
            writer.write(ok(b"someone else's"))  # unasked, while the connection sits in the pool
            await writer.drain()
            stray_sent.set()
            await read_request(reader)

    async def scenario(client: httpx.AsyncClient, url: str) -> list[str]:
        first = (await client.post(url, content=b"1")).text
        await stray_sent.wait()
        return [first, (await client.post(url, content=b"2")).text]

    texts, connections = run(script, scenario)
    assert texts == ["first", "second"]
    assert connections == 2


def test_bytes_beyond_a_responses_length_close_its_connection() -> None:
    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if number == 1:
            writer.write(ok(b"first") + ok(b"someone else's"))  # one answer too many
            await read_request(reader)
        else:
            writer.write(ok(b"second"))

    async def scenario(client: httpx.AsyncClient, url: str) -> list[str]:
        return [(await client.post(url, content=b"%d" % n)).text for n in (1, 2)]

    texts, connections = run(script, scenario)
    assert texts == ["first", "second"]
    assert connections == 2


# Rule 3: a broken body is never complete.

FRAMINGS = {
    "content-length": (b"content-length: 100\r\n", b"partial"),
    "chunked": (b"transfer-encoding: chunked\r\n", b"7\r\npartial\r\n"),
    "close-delimited": (b"", b"partial"),
}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_reset_in_the_middle_of_a_body_is_an_error_not_the_end(framing: str) -> None:
    header, partial = FRAMINGS[framing]
    head_read = asyncio.Event()

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" + header + b"\r\n")
        await head_read.wait()
        writer.write(partial)
        await writer.drain()
        reset(writer)

    async def scenario(client: httpx.AsyncClient, url: str) -> bytes:
        received = b""
        async with client.stream("POST", url, content=b"x") as response:
            head_read.set()
            with pytest.raises(httpx.TransportError):
                async for chunk in response.aiter_raw():
                    received += chunk
        return received

    received, _ = run(script, scenario)
    assert received in (b"", b"partial")


def test_a_chunked_body_closed_before_its_last_chunk_is_an_error() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n")

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    run(script, scenario)


# Rule 4: bounded and well-formed heads.


def test_a_response_head_over_the_bound_is_refused() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-endless: ")
        for _ in range(64):  # 1 MiB of one header line, unless the client stops reading first
            writer.write(b"a" * 16384)
            await writer.drain()
        writer.write(b"\r\ncontent-length: 0\r\n\r\n")

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="exceed"):
            await client.post(url, content=b"x")

    run(script, scenario)


def test_many_headers_over_the_bound_in_one_piece_are_refused() -> None:
    headers = b"".join(b"x-header-%06d: %s\r\n" % (n, b"v" * 100) for n in range(MAX_RESPONSE_HEAD_BYTES // 100))

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 0\r\n\r\n")

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="exceed"):
            await client.post(url, content=b"x")

    run(script, scenario)


def test_a_large_head_within_the_bound_is_read() -> None:
    headers = b"".join(b"x-header-%04d: %s\r\n" % (n, b"v" * 100) for n in range(600))  # about 70 KiB

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 2\r\n\r\nok")

    async def scenario(client: httpx.AsyncClient, url: str) -> tuple[int, int]:
        response = await client.post(url, content=b"x")
        return response.status_code, len(response.headers)

    (status, count), _ = run(script, scenario)
    assert (status, count) == (200, 601)


def test_trailers_never_become_headers() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nx-trailer: injected\r\nset-cookie: session=evil\r\n\r\n"
        )

    async def scenario(client: httpx.AsyncClient, url: str) -> tuple[str, list[str]]:
        response = await client.post(url, content=b"x")
        return response.text, list(response.headers)

    (text, names), _ = run(script, scenario)
    assert text == "hello"
    assert names == ["transfer-encoding"]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 099 Below\r\ncontent-length: 0\r\n\r\n",
    ],
)
def test_a_status_that_cannot_answer_a_request_is_a_protocol_error(head: bytes) -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        await reader.read()

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    run(script, scenario)


def test_an_interim_response_left_as_the_final_answer_is_a_protocol_error() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n")

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    run(script, scenario)


# Rule 7: no parser or protocol error escapes.

GARBAGE = [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\nafter the upgrade",
]


@pytest.mark.parametrize("answer", GARBAGE)
def test_an_unparseable_response_is_an_httpx_error_and_nothing_reaches_the_event_loop(
    answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")

    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await reader.read()

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")

    run(script, scenario)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR] == []


def test_an_endless_trailer_is_refused() -> None:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.write(b"0\r\nx-endless: ")
        for _ in range(64):  # 1 MiB of one trailer line, unless the client stops reading first
            writer.write(b"a" * 16384)
            await writer.drain()

    async def scenario(client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("POST", url, content=b"x") as response:
            with pytest.raises(httpx.RemoteProtocolError, match="exceed"):
                await response.aread()

    run(script, scenario)
