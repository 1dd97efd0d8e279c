"""Which headers cross the proxy, in each direction, and the limits Portkey puts on the values of its own.

Hop-by-hop headers (RFC 9110 §7.6.1, plus any named in `Connection`) describe one connection and are
never forwarded. `Host` is the upstream's own. Everything else, `Authorization` and `x-portkey-*`
included, passes unchanged, except the few the proxy itself consumes or sets.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
METADATA = b"x-portkey-metadata"
TRACE_ID = b"x-portkey-trace-id"
REQUEST_ID = b"x-request-id"
# Set by the proxy from what it sends, or meaningless once the body has been received here.
_RECOMPUTED = frozenset({b"host", b"content-length", b"expect", METADATA})
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,200}")
BODILESS_STATUSES = frozenset({204, 304})  # responses that never have a body (RFC 9112 §6.3)
# Portkey's limit for metadata keys and values, in the UTF-16 code units its JavaScript counts.
MAX_LENGTH = 128
_DIGEST_LENGTH = 16


@dataclass(slots=True)
class RequestHeaders:
    """The incoming request's headers, split into what is forwarded and what the proxy reads."""

    forward: RawHeaders = field(default_factory=list)
    identity: str | None = None
    metadata: str | None = None
    request_id: str | None = None
    content_type: bytes = b""
    content_length: bytes | None = None
    chunked: bool = False

    @property
    def has_body(self) -> bool:
        return self.chunked or (self.content_length is not None and self.content_length != b"0")

    @property
    def is_json(self) -> bool:
        media_type = self.content_type.split(b";", 1)[0].strip().lower()
        return media_type == b"application/json" or media_type.endswith(b"+json")


def split_request_headers(raw: RawHeaders, identity_header: bytes) -> RequestHeaders:
    """One pass over the ASGI header list (names arrive lower-cased)."""
    result = RequestHeaders()
    dropped = _connection_named(raw)
    for name, value in raw:
        if name == identity_header:
            result.identity = _text(value)
        elif name == METADATA:
            result.metadata = _text(value)
        elif name == b"content-length":
            result.content_length = value.strip()
        elif name == b"transfer-encoding":
            result.chunked = b"chunked" in value.lower()
        elif name == b"content-type":
            result.content_type = value
            result.forward.append((name, value))
        elif name == REQUEST_ID:
            if result.request_id is None and (request_id := client_request_id(value)) is not None:
                result.request_id = request_id
                result.forward.append((name, value))
        elif name not in HOP_BY_HOP and name not in _RECOMPUTED and name not in dropped:
            result.forward.append((name, value))
    return result


def client_request_id(value: bytes) -> str | None:
    """A client's `x-request-id` the proxy may pass on and return, or None: it is replaced by a fresh one.

    Only visible ASCII (no spaces) and at most 200 characters: the id is echoed in the response, written
    in the access line and sent upstream, where anything else could be re-encoded, forge or bloat them.
    """
    return value.decode("ascii") if _REQUEST_ID.fullmatch(value) else None


class _RequestIds:
    """Version-4 UUIDs as 32 hex digits (what `uuid.uuid4().hex` gives), from the OS's random bytes read
    4 KiB at a time: one `getrandom` syscall per 256 ids rather than one per request."""

    __slots__ = ("_random", "_used")

    def __init__(self) -> None:
        self._random = b""
        self._used = 0

    def new(self) -> str:
        if self._used >= len(self._random):
            self._random, self._used = os.urandom(4096), 0
        start, self._used = self._used, self._used + 16
        uuid = bytearray(self._random[start : start + 16])
        uuid[6] = (uuid[6] & 0x0F) | 0x40  # version 4
        uuid[8] = (uuid[8] & 0x3F) | 0x80  # RFC 4122 variant
        return uuid.hex()

    def forget(self) -> None:
        self._random, self._used = b"", 0


_request_ids = _RequestIds()
# A forked worker must never hand out its parent's ids: it reads random bytes of its own.
os.register_at_fork(after_in_child=_request_ids.forget)


def new_request_id() -> str:
    """The id of a request whose client sent none: random, as a version-4 UUID's 32 hex digits."""
    return _request_ids.new()


def response_headers(raw: RawHeaders, status: int = 200) -> RawHeaders:
    """The upstream response's headers as they go back to the client."""
    dropped = _connection_named(raw)
    if status in BODILESS_STATUSES:
        # Its Content-Length describes a body never sent; the server would wait for that body.
        dropped |= {b"content-length"}
    return [
        (name, value) for name, value in raw if (lowered := name.lower()) not in HOP_BY_HOP and lowered not in dropped
    ]


def _connection_named(raw: RawHeaders) -> frozenset[bytes]:
    named: set[bytes] = set()
    for name, value in raw:
        if len(name) == 10 and name.lower() == b"connection":  # the length first: no lower-cased copy of every name
            named.update(token.strip().lower() for token in value.split(b","))
    return frozenset(named)


def _text(value: bytes) -> str:
    # Clients send UTF-8 in practice; latin-1 is what HTTP guarantees and never fails.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def shorten(value: str) -> str:
    """`value` itself when it fits Portkey's limit; else a prefix, `~` and a digest of the whole value.

    The digest keeps distinct long values distinct, and the prefix keeps them readable.
    """
    if portkey_length(value) <= MAX_LENGTH:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LENGTH]
    return f"{clip(value, MAX_LENGTH - _DIGEST_LENGTH - 1)}~{digest}"


def portkey_length(value: str) -> int:
    """The length Portkey's JavaScript sees: UTF-16 code units, so a character beyond U+FFFF counts twice."""
    if value.isascii():
        return len(value)
    return len(value.encode("utf-16-le", "surrogatepass")) // 2


def clip(value: str, units: int) -> str:
    """The longest prefix of `value` of at most `units` UTF-16 code units, never half of a character."""
    prefix = value[:units]
    while portkey_length(prefix) > units:
        prefix = prefix[:-1]
    return prefix
