"""The request sent to Portkey: the one place where the outgoing headers and body are decided.

What the client sent passes as it came (see `headers.split_request_headers` for what never does);
on top of it, in this order: the metadata header attribution wrote, the conversation trace, the
Portkey defaults, the request id, a `Content-Length` for a body that streams through, and
`Accept-Encoding: identity` when the answer's usage must be read for a budget. A JSON body goes on
as it came unless its family must add a field (`Dialect.request_body`: a stream's usage). The
framing headers of the wire itself (`Host`, `Content-Length` of a body in hand, `Transfer-Encoding`)
are the transport's (`transport.WireRequest`), as httpcore's are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from ..dialects import Dialect
from ..headers import METADATA, REQUEST_ID, RawHeaders
from ..observability.logs import RateLimitedWarnings
from .client import Content, UpstreamRequest
from .portkey_defaults import PortkeyDefaults, blank_api_key
from .traces import ConversationTrace


@dataclass(frozen=True, slots=True)
class OutgoingHeaders:
    """What the proxy adds to the headers it forwards; None: the request keeps its own (or has none)."""

    metadata: bytes | None = None
    request_id: bytes | None = None
    content_length: bytes | None = None
    uncompressed: bool = False  # ask for the answer without content coding (its usage must be read)


@dataclass(frozen=True, slots=True)
class UpstreamRequestBuilder:
    stream_usage: bool = True  # INCLUDE_STREAM_USAGE
    conversation_trace: ConversationTrace | None = None
    portkey_defaults: PortkeyDefaults | None = None
    _warnings: RateLimitedWarnings = field(default_factory=RateLimitedWarnings)

    def build(
        self, method: str, url: httpx.URL, forward: RawHeaders, added: OutgoingHeaders, content: Content
    ) -> UpstreamRequest:
        return UpstreamRequest(method, url, self.headers(forward, added), content)

    def body(self, dialect: Dialect, raw: bytes, fields: dict[str, object], *, charged: bool) -> bytes:
        """A JSON body as it goes upstream; `charged`: its answer's usage is needed for a budget."""
        return dialect.request_body(raw, fields, stream_usage=self.stream_usage, charged=charged)

    def headers(self, forward: RawHeaders, added: OutgoingHeaders) -> RawHeaders:
        outgoing = forward if added.metadata is None else [*forward, (METADATA, added.metadata)]
        if self.conversation_trace is not None:
            outgoing = self.conversation_trace.apply(outgoing)
        if self.portkey_defaults is not None:
            outgoing = self.portkey_defaults.apply(outgoing)
        if (self.portkey_defaults is None or not self.portkey_defaults.fills_api_key) and blank_api_key(outgoing):
            self._warnings.warn(
                "blank-portkey-key",
                "a request carries an empty x-portkey-api-key (in librechat.yaml, a variable with no value?) and "
                "PORTKEY_API_KEY is unset, so Portkey gets no key: set PORTKEY_API_KEY in the proxy's settings",
            )
        if added.request_id is not None:
            outgoing = [*outgoing, (REQUEST_ID, added.request_id)]
        if added.content_length is not None:
            outgoing = [*outgoing, (b"content-length", added.content_length)]
        if added.uncompressed:
            outgoing = [(name, value) for name, value in outgoing if name != b"accept-encoding"]
            outgoing.append((b"accept-encoding", b"identity"))
        return outgoing
