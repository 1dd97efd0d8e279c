"""Every answer the proxy makes itself, in one table: its code, status, Retry-After and message.

The answers are shaped like OpenAI's errors (`{"error": {"message", "type", "code"}}`), so LibreChat
shows their message to its user; each message names the setting or header to change. A code keeps
one status wherever it is used; a situation worded its own way has a row of its own. The code is
the `code` label of `portkey_user_proxy_errors_total`, and README.md lists the codes ("Error codes").

Two kinds of rows. The server's refusals (`by_server`) are written by `inbound/server.py` as raw
HTTP/1.1 (`raw_response`) before the app sees a whole request, and always close the connection.
Every other row is a `ProxyError` that the request path raises (`error`); `answers.py`, at the top
of the request path, turns the failures of the code below into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import orjson

from .asgi import Send

ERROR_TYPE = "portkey_user_proxy_error"

Headers = tuple[tuple[bytes, bytes], ...]


class ProxyError(Exception):
    """An answer to send: built from a row of the table below (`Answer.error`)."""

    def __init__(self, status: int, message: str, code: str, *, headers: Headers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Answer:
    code: str
    status: int
    message: str  # a `str.format` template: the values in braces come from where it is answered
    retry_after: int | None = None  # seconds: OpenAI's SDKs wait that long before they retry
    closes: bool = False  # the connection closes after it: what the client still sends is never read
    by_server: bool = False  # one of the server's refusals, sent before the app sees the request
    challenge: bytes | None = None  # a WWW-Authenticate value

    @property
    def headers(self) -> Headers:
        """The headers it adds to the response, besides its content type and length."""
        headers: list[tuple[bytes, bytes]] = []
        if self.challenge is not None:
            headers.append((b"www-authenticate", self.challenge))
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        if self.closes:
            headers.append((b"connection", b"close"))
        return tuple(headers)

    def error(self, **values: object) -> ProxyError:
        """The answer, its message filled with `values`, for the request path to raise."""
        return ProxyError(self.status, self.message.format(**values), self.code, headers=self.headers)

    def raw_response(self, **values: object) -> bytes:
        """The answer as the server writes it on the connection, its message filled with `values`."""
        body = error_body(self.message.format(**values), self.code)
        status_line = f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n".encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in (*headers, *self.headers))
        return status_line + lines + b"\r\n" + body


# --- The request path's answers ------------------------------------------------------------------------
# inbound/: the proxy's key, the request target, the body's size, the upstream slots.
INVALID_API_KEY = Answer(
    "invalid_api_key",
    401,
    "{problem}: send `Authorization: Bearer <PROXY_API_KEY>` "
    "(in librechat.yaml, set the endpoint's apiKey to the proxy's PROXY_API_KEY)",
    closes=True,  # the body of a request without the key is never read
    challenge=b'Bearer realm="portkey-user-proxy"',
)
TARGET_NOT_A_PATH = Answer("invalid_request_target", 400, "the request target must be a path starting with /")
TARGET_WOULD_CHANGE = Answer(
    "invalid_request_target",
    400,
    "the request path has dot segments (`.` or `..`, plain or percent-encoded) or characters a URL may not hold "
    "unencoded; send it normalised and percent-encoded",
)
REQUEST_TOO_LARGE = Answer(
    "request_too_large",
    413,
    "request body exceeds {limit} bytes (MAX_REQUEST_BODY_BYTES)",
    closes=True,  # the client may still be sending the body: closing is cheaper than reading it
)
PROXY_BUSY = Answer(
    "proxy_busy",
    503,
    "the proxy is already sending {limit} requests upstream (MAX_CONCURRENT_UPSTREAM_REQUESTS); retry shortly",
    retry_after=1,
)
# attribution/: fail-closed refusals.
USER_NOT_IDENTIFIED = Answer(
    "user_not_identified",
    403,
    "this request's user could not be identified ({reason}) and UNRESOLVED_USER_POLICY is fail-closed",
)
USER_LOOKUP_UNAVAILABLE = Answer(
    "user_lookup_unavailable",
    503,
    "the user directory (LibreChat's MongoDB) is unavailable and UNRESOLVED_USER_POLICY is fail-closed",
    retry_after=5,
)
# budgets/: the budgets word the message (whose budget, for which period, when it resets).
BUDGET_EXCEEDED = Answer(
    "budget_exceeded",
    412,  # as Portkey answers for its own exhausted budgets: the OpenAI and Anthropic SDKs never retry it
    "{message}",
)
BUDGET_STORE_UNAVAILABLE = Answer("budget_store_unavailable", 503, "{message}", retry_after=5)
# upstream/: Portkey failed before its response began.
UPSTREAM_CONNECT_TIMEOUT = Answer(
    "upstream_unreachable", 502, "could not connect to the upstream {target} within {seconds:g} s"
)
UPSTREAM_PROXY_REFUSED = Answer(
    "upstream_unreachable", 502, "the proxy refused the connection to the upstream {target} ({hint})"
)
UPSTREAM_UNREACHABLE = Answer("upstream_unreachable", 502, "the upstream {target} is unreachable ({hint})")
UPSTREAM_TIMEOUT = Answer(
    "upstream_timeout",
    504,
    "the upstream {target} sent no response within {seconds:g} s (UPSTREAM_READ_TIMEOUT_SECONDS)",
)
UPSTREAM_BUSY = Answer("upstream_busy", 503, "too many requests are waiting for an upstream connection")
UPSTREAM_ERROR = Answer("upstream_error", 502, "the upstream {target} failed: {failure}")
# Anything else: a bug, ended with this answer rather than the server's plain-text 500.
INTERNAL_ERROR = Answer(
    "internal_error",
    500,
    "the proxy failed on this request (an internal error, logged as such); please retry",
)

# --- The server's refusals (inbound/server.py) ----------------------------------------------------------
TOO_MANY_CONNECTIONS = Answer(
    "too_many_connections",
    503,
    "the proxy has {limit} connections open (MAX_CONNECTIONS); retry shortly",
    retry_after=1,
    closes=True,
    by_server=True,
)
INVALID_HTTP_REQUEST = Answer(
    "invalid_http_request",
    400,
    "the request is not valid HTTP/1.1 (its framing or a header's syntax); correct the client",
    closes=True,
    by_server=True,
)
HEAD_TIMEOUT = Answer(
    "request_timeout",
    408,
    "the request line and headers did not arrive within {seconds:g}s (REQUEST_HEAD_TIMEOUT_SECONDS)",
    closes=True,
    by_server=True,
)
BODY_TIMEOUT = Answer(
    "request_timeout",
    408,
    "the request body stopped arriving for {seconds:g}s (REQUEST_BODY_TIMEOUT_SECONDS)",
    closes=True,
    by_server=True,
)
HEAD_TOO_LARGE = Answer(
    "request_header_too_large",
    431,
    "the request line and headers exceed {limit} bytes (MAX_REQUEST_HEAD_BYTES)",
    closes=True,
    by_server=True,
)

# Every row above, in order: what the tests hold the README's list and the code against.
CATALOGUE: tuple[Answer, ...] = tuple(value for value in globals().values() if isinstance(value, Answer))


def error_body(message: str, code: str) -> bytes:
    """The one OpenAI-style error body: `{"error": {"message", "type", "code"}}`."""
    return orjson.dumps({"error": {"message": message, "type": ERROR_TYPE, "code": code}})


async def send_error(send: Send, error: ProxyError, extra_headers: Headers = ()) -> None:
    body = error_body(error.message, error.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *error.headers,
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
