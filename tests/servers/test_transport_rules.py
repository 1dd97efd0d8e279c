"""The transport's rules, each against a scripted upstream that breaks exactly that rule's assumption.

Rule 1 (never resend what may have arrived) is in test_transport.py and test_upstream.py.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from portkey_user_proxy.upstream.transport import MAX_RESPONSE_HEAD_BYTES
from tests.support.scripted_upstream import ok, read_request, reset, run

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
