"""The soak's fake Portkey: answers chat completions and says, in a response header, what reached it.

`x-soak-seen` is compact JSON: the `_user` of `x-portkey-metadata`, the body's `user`, the trace id,
and whether `Authorization`, the identity header or the conversation header were forwarded (they
must not be) and `x-portkey-api-key` was the proxy's. Streams send a few chunks, then usage and
`[DONE]`. Run it as `python -m bench.soak_upstream PORT API_KEY`; it prints `ready` once it listens.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

SEEN = b"x-soak-seen"
STREAM_EVENTS = 5
_EVENT_GAP_SECONDS = 0.002
_CHUNK = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" token"}}]}\n\n'
_USAGE = b'data: {"object":"chat.completion.chunk","choices":[],"usage":{"total_tokens":42}}\n\ndata: [DONE]\n\n'
_COMPLETION = (
    b'{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":2,"total_tokens":42}}'
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SoakUpstream:
    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body or b"{}")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        seen = json.dumps(self._seen(headers, request), separators=(",", ":")).encode()
        if request.get("stream") is True:
            await self._stream(send, seen)
        else:
            await _start(send, b"application/json", seen, len(_COMPLETION))
            await send({"type": "http.response.body", "body": _COMPLETION})

    def _seen(self, headers: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
        metadata = json.loads(headers.get("x-portkey-metadata", "{}"))
        return {
            "user": metadata.get("_user"),
            "body_user": request.get("user"),
            "trace": headers.get("x-portkey-trace-id"),
            "authorization": "authorization" in headers,
            "identity_header": "x-librechat-user-id" in headers,
            "conversation_header": "x-librechat-conversation-id" in headers,
            "api_key_ok": headers.get("x-portkey-api-key") == self._api_key,
        }

    async def _stream(self, send: Send, seen: bytes) -> None:
        await _start(send, b"text/event-stream", seen, None)
        for _ in range(STREAM_EVENTS):
            await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
            await asyncio.sleep(_EVENT_GAP_SECONDS)  # a model producing tokens
        await send({"type": "http.response.body", "body": _USAGE})


async def _start(send: Send, content_type: bytes, seen: bytes, length: int | None) -> None:
    headers = [(b"content-type", content_type), (SEEN, seen)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})


def main() -> None:
    port, api_key = int(sys.argv[1]), sys.argv[2]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)  # connections queue from here on, so `ready` can be said before the server runs
    print("ready", flush=True)
    config = uvicorn.Config(SoakUpstream(api_key), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
