"""A bound on the request line and headers, enforced by the server while it reads them.

uvicorn's h11 parser bounds an incomplete request head (`h11_max_incomplete_event_size`), but its
faster httptools parser, the one `uvicorn[standard]` brings, buffers headers of any size. The
protocol below is uvicorn's httptools one, counting the bytes that arrive while a request head is
incomplete: past `MAX_REQUEST_HEAD_BYTES` the client gets 431 and the connection is closed. Both
parsers read the limit from the same uvicorn option.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import RateLimitedWarnings

_warnings = RateLimitedWarnings()


def server_options(max_head_bytes: int) -> dict[str, Any]:
    """uvicorn options that bound request heads (a string, so that worker processes import it too)."""
    return {
        "http": "portkey_user_proxy.request_head:BoundedHttpToolsProtocol",
        "h11_max_incomplete_event_size": max_head_bytes,
    }


def _refusal(limit: int) -> bytes:
    message = f"the request line and headers exceed {limit} bytes (MAX_REQUEST_HEAD_BYTES)"
    body = orjson.dumps(
        {"error": {"message": message, "type": "portkey_user_proxy_error", "code": "request_header_too_large"}}
    )
    head = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return head + body


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, and uvicorn answers through send_400_response."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit: int = self.config.h11_max_incomplete_event_size or 65536
        self._head_bytes = 0  # of the request line and headers parsed so far
        self._unparsed_bytes = 0  # received while a head was incomplete, parsed or not
        self._in_head = True  # until a request's headers are complete
        self._ended_a_request = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        self._ended_a_request = False
        super().data_received(data)
        # httptools holds a header line until it ends: a head that stays incomplete is counted by
        # the bytes received, so one endless header cannot fill the memory. A read that ended a
        # request is not counted, though the next head may have begun in it: loose by one read.
        if not self._in_head or self._ended_a_request or self.transport.is_closing():
            return
        self._unparsed_bytes += len(data)
        if self._unparsed_bytes > self._head_limit:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._unparsed_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._ended_a_request = True

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._head_limit:
            self._refused = True
            raise _HeadTooLarge

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        _warnings.warn(
            "request-head",
            "refused a request whose line and headers exceed %d bytes (MAX_REQUEST_HEAD_BYTES) with 431",
            self._head_limit,
        )
        self.transport.write(_refusal(self._head_limit))
        self.transport.close()
