"""Upstream answers that are valid HTTP but unusual, through the real proxy: each reaches the client
whole, with no error of the proxy's own."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.support.proxy import MakeProxy
from tests.support.scripted_upstream import ScriptedUpstream, read_request


def _answering(raw: bytes) -> ScriptedUpstream:
    async def script(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(raw)
            await writer.drain()

    return ScriptedUpstream(script).start()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
    ],
    ids=["304", "204"],
)
def test_a_bodiless_answer_declaring_a_length_is_relayed_whole_with_no_error(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, head: bytes
) -> None:
    caplog.set_level(logging.WARNING)
    upstream = _answering(head)
    try:
        proxy = make_proxy(portkey_url=upstream.url)
        status = int(head.split(b" ")[1])
        with httpx.Client() as client:
            for _ in range(2):
                response = client.get(proxy.url + "/v1/files/file-1")
                assert response.status_code == status
                assert response.content == b""
                assert "content-length" not in response.headers
            assert client.get(proxy.url + "/healthz").status_code == 200
        proxy.server.stop()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        upstream.stop()
