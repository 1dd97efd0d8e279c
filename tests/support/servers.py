"""Real servers on loopback ports for the integration tests: uvicorn running an ASGI app in a thread.

Each server listens on a socket bound before its thread starts, so clients can connect at once: the
kernel queues them until the server accepts, and no test waits for a server to "come up".
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes on a new loopback connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def unused_port() -> int:
    """A loopback port with nothing listening on it: connections are refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def read_body(receive: Callable[..., Any]) -> bytes:
    """An ASGI request's whole body."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


class ServerThread:
    def __init__(self, app: Any, **config: Any) -> None:
        self._socket = bound_socket()
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"log_config": None, "access_log": False, "lifespan": "auto", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def metadata(self) -> dict[str, str]:
        parsed: dict[str, str] = json.loads(self.headers["x-portkey-metadata"])
        return parsed


@dataclass
class Upstream:
    """A fake Portkey: records every request and answers by path.

    /v1/chat/completions    JSON completion, or SSE when the body says `stream: true`
    /gated-stream           SSE whose chunk N is sent only once `gates[N]` is set by the test
    /endless-stream         SSE until the client goes away; sets `stream_cancelled` then
    /status/<code>          that status with an OpenAI-style error body
    /gzip                   a gzip-encoded JSON body with `content-encoding: gzip`
    /set-cookie             sets a cookie
    /never-answers          never sends response headers
    anything else           200 JSON echo
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    gates: list[threading.Event] = field(default_factory=lambda: [threading.Event() for _ in range(3)])
    stream_cancelled: threading.Event = field(default_factory=threading.Event)
    stream_started: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.received.clear()
        self.gates = [threading.Event() for _ in range(3)]
        self.stream_cancelled.clear()
        self.stream_started.clear()

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        header_list = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        record = Received(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            dict(header_list),
            header_list,
            bytes(body),
        )
        self.received.append(record)
        await self._answer(record, receive, send)

    async def _answer(self, record: Received, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        path = record.path
        if path == "/v1/chat/completions":
            if json.loads(record.body or b"{}").get("stream"):
                await _sse(send, [_chunk("Hel"), _chunk("lo"), _usage_chunk()])
            else:
                await _json(send, 200, _completion(), {"x-portkey-trace-id": "trace-123"})
        elif path == "/gated-stream":
            await self._gated_stream(send)
        elif path == "/endless-stream":
            await self._endless_stream(receive, send)
        elif path.startswith("/status/"):
            code = int(path.removeprefix("/status/"))
            await _json(send, code, {"error": {"message": f"upstream said {code}", "type": "x", "code": code}})
        elif path == "/gzip":
            payload = gzip.compress(json.dumps({"compressed": True}).encode())
            headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
            await _raw(send, 200, headers, payload)
        elif path == "/set-cookie":
            await _json(send, 200, {"ok": True}, {"set-cookie": "session=from-upstream; Path=/"})
        elif path == "/never-answers":
            await receive()  # returns only when the client goes away
        else:
            await _json(send, 200, {"echo": record.path}, {"x-portkey-trace-id": "trace-echo"})

    async def _gated_stream(self, send: Callable[..., Any]) -> None:
        await send(_sse_start())
        for number, gate in enumerate(self.gates):
            if number:  # the first chunk goes at once; each later one waits for the test
                await asyncio.to_thread(gate.wait, 10)
            await send({"type": "http.response.body", "body": _event(_chunk(str(number))), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _endless_stream(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await send(_sse_start())
        await send({"type": "http.response.body", "body": _event(_chunk("first")), "more_body": True})
        self.stream_started.set()
        # uvicorn answers `receive` with http.disconnect when the proxy drops the connection.
        message = await receive()
        if message["type"] == "http.disconnect":
            self.stream_cancelled.set()


def _completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def _chunk(text: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def _usage_chunk() -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 6}}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _sse_start() -> dict[str, Any]:
    headers = [(b"content-type", b"text/event-stream"), (b"x-portkey-trace-id", b"trace-sse")]
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def _sse(send: Callable[..., Any], chunks: list[dict[str, Any]]) -> None:
    await send(_sse_start())
    for chunk in chunks:
        await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _json(send: Callable[..., Any], status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await _raw(send, status, headers, json.dumps(payload).encode())


async def _raw(send: Callable[..., Any], status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
