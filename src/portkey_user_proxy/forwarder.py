"""The life of one proxied request, in four steps.

1. Read the incoming request: its headers, its target, and its JSON body when its family names the
   user there (`inbound`, `dialects`).
2. Attribute it: who is asking, looked up in LibreChat's MongoDB; or refuse it (`attribution`).
3. Build the upstream request: every header the proxy adds, and the body as it goes on (`upstream.request`).
4. Exchange it with Portkey and relay the answer, streaming, counting the usage it reports.

Everything that is not the proxy's own route goes to `PORTKEY_URL` + path + query; the host a request
names is never used.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx

from .asgi import Receive, Scope, Send
from .attribution.decision import Attribution, AttributionOutcome, Attributor, refusal
from .attribution.directory import LookupOutcome
from .attribution.identity import Identity, identify
from .budgets import Budgets, Demand, Hold
from .dialects import Dialect, Route, route_for
from .dialects.fields import json_fields
from .dialects.usage import Usage, UsageScanner
from .errors import ProxyError, send_error
from .headers import REQUEST_ID, TRACE_ID, RawHeaders, RequestHeaders, response_headers, split_request_headers
from .inbound.auth import InboundKey
from .inbound.body import BodyTooLarge, ClientDisconnected, read_body, stream_body
from .inbound.client import CancelOnDisconnect, ClientStalled, TimedSend, connection_abort, departure
from .inbound.last_resort import internal_error
from .inbound.limits import UpstreamSlots, capped, check_declared_length, too_large
from .inbound.target import upstream_url
from .observability.logs import AccessRecord, RateLimitedWarnings, logger
from .observability.metrics import Metrics
from .upstream.client import Content, UpstreamClient, UpstreamPolicy, UpstreamRequest, error_before_response
from .upstream.request import OutgoingHeaders, UpstreamRequestBuilder

# The access log's status for clients that left before the response ended (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class ForwardingPolicy:
    """What the forwarder itself needs to know, resolved once at start-up (see `app.build_forwarder`)."""

    identity_header: bytes
    body_limit: int
    write_timeout: float
    portkey_url: httpx.URL
    inbound_key: InboundKey | None = None
    max_upstream_requests: int = 0  # 0: no limit


@dataclass(slots=True)
class IncomingRequest:
    """Step 1's result: what the proxy read of the client's request."""

    method: str
    url: httpx.URL  # where it goes: PORTKEY_URL's path + the client's path and query
    headers: RequestHeaders
    route: Route
    body: bytes | None  # the JSON body, read whole when the route's family names the user in it
    fields: dict[str, object] | None  # the body's fields the family reads; None when not a JSON object
    body_received: asyncio.Event  # set once the client has sent all of its body

    @property
    def streams_body(self) -> bool:
        """Whether a body is still to come from the client, streamed upstream as it arrives."""
        return self.body is None and self.headers.has_body


@dataclass(frozen=True, slots=True)
class Spender:
    """The request's hold on its budgets, settled with the answer's cost, and the model it is priced by."""

    hold: Hold
    model: str | None


@dataclass(frozen=True, slots=True)
class Attributed:
    """Step 2's result: who is asking, and whose budgets the answer costs (None: nobody's)."""

    attribution: Attribution
    spender: Spender | None


class Forwarder:
    def __init__(
        self,
        policy: ForwardingPolicy,
        attributor: Attributor,
        builder: UpstreamRequestBuilder,
        client: UpstreamClient,
        upstream: UpstreamPolicy,
        metrics: Metrics,
        budgets: Budgets | None = None,
    ) -> None:
        self._policy = policy
        self._budgets = budgets
        self._attributor = attributor
        self._builder = builder
        self._client = client
        self._upstream = upstream
        self._metrics = metrics
        self._base_path = policy.portkey_url.raw_path.rstrip(b"/")
        self._upstream_slots = UpstreamSlots(policy.max_upstream_requests)
        self._warnings = RateLimitedWarnings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        route = route_for(path)
        record = AccessRecord(scope["method"], path, time.perf_counter(), route=route.name)
        watched = TimedSend(send, self._policy.write_timeout, connection_abort(scope))
        try:
            await self._proxy(scope, receive, watched, record, route)
        except ProxyError as error:
            await self._answer_error(watched, error, record)
        except ClientDisconnected:
            record.status = CLIENT_CLOSED
        except ClientStalled:
            record.status = CLIENT_CLOSED
            self._warnings.warn(
                "client-stalled", "cut short a response its client stopped reading (RESPONSE_WRITE_TIMEOUT_SECONDS)"
            )
        except Exception as exc:  # the last resort: a bug ends this request, never the server
            failure = internal_error(exc, record.method, record.route)
            if watched.started:  # too late for an error response: the client sees it cut short
                self._metrics.errors.labels(record.route, failure.code).inc()
            else:
                await self._answer_error(watched, failure, record)
        finally:
            watched.close()
            self._metrics.requests.labels(record.route, str(record.status)).inc()
            record.emit()

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, record: AccessRecord, route: Route) -> None:
        incoming = await self._read_request(scope, receive, record, route)
        # A client that leaves is noticed from the end of its body on, its user's lookup included.
        async with CancelOnDisconnect(receive, incoming.body_received, departure(scope)) as watch:
            attributed = await self._attribute(incoming, record)
            try:
                request = self._upstream_request(incoming, attributed, receive, record)
                await self._exchange(request, watch, send, record, route.dialect, attributed.spender)
            finally:
                if attributed.spender is not None and self._budgets is not None:
                    self._budgets.release(attributed.spender.hold)  # a no-op once the answer settled it
        if watch.disconnected:
            record.status = CLIENT_CLOSED

    async def _answer_error(self, send: Send, error: ProxyError, record: AccessRecord) -> None:
        record.status = error.status
        self._metrics.errors.labels(record.route, error.code).inc()
        await send_error(send, error, ((REQUEST_ID, record.request_id.encode()),))

    # Step 1: read the incoming request.

    async def _read_request(
        self, scope: Scope, receive: Receive, record: AccessRecord, route: Route
    ) -> IncomingRequest:
        key = self._policy.inbound_key
        raw = scope["headers"] if key is None else key.admit(scope["headers"])
        headers = split_request_headers(raw, self._policy.identity_header)
        check_declared_length(headers, self._policy.body_limit)
        record.request_id = headers.request_id or uuid.uuid4().hex
        url = self._url(scope)
        body, fields = await self._read_json_body(headers, receive, route.dialect)
        incoming = IncomingRequest(scope["method"], url, headers, route, body, fields, asyncio.Event())
        if not incoming.streams_body:
            incoming.body_received.set()
        return incoming

    def _url(self, scope: Scope) -> httpx.URL:
        # raw_path keeps the client's percent-encoding; it never carries a scheme or host.
        path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        return upstream_url(self._policy.portkey_url, self._base_path, path, scope.get("query_string", b""))

    async def _read_json_body(
        self, headers: RequestHeaders, receive: Receive, dialect: Dialect
    ) -> tuple[bytes | None, dict[str, object] | None]:
        if not (dialect.reads_body and headers.is_json and headers.has_body):
            return None, None
        try:
            body = await read_body(receive, self._policy.body_limit)
        except BodyTooLarge as exc:
            raise too_large(exc.limit) from None
        return body, json_fields(body)

    # Step 2: attribute it, or refuse it (unknown under fail-closed, or over budget).

    async def _attribute(self, incoming: IncomingRequest, record: AccessRecord) -> Attributed:
        identity = identify(incoming.headers.identity, *incoming.route.dialect.identity_fields(incoming.fields or {}))
        attribution = await self._attributor.attribute(identity)
        self._note_attribution(record, identity, attribution)
        if attribution.rejected:
            logger.info("refused the user id %s (%s)", identity.for_logs(), attribution.reason)
            raise refusal(attribution)
        return Attributed(attribution, await self._admit(incoming, attribution))

    def _note_attribution(self, record: AccessRecord, identity: Identity, attribution: Attribution) -> None:
        record.user = attribution.user_value or "-"
        record.resolved = attribution.outcome is AttributionOutcome.RESOLVED
        record.attribution = f"{attribution.outcome}:{attribution.reason}"
        self._metrics.attributions.labels(attribution.outcome.value, attribution.reason).inc()
        if identity.unresolved_placeholder:
            self._warnings.warn(
                "identity-placeholder",
                "LibreChat sent the placeholder %s unresolved (a LibreChat configuration or version problem); "
                "the request body's user id is used instead when present",
                identity.unresolved_placeholder,
            )
        if attribution.outcome is AttributionOutcome.FALLBACK and attribution.reason == LookupOutcome.NOT_FOUND:
            self._warnings.warn(
                "user-not-found",
                "the user id %s is not in the users collection at %s, so `_user` is the id itself "
                "(UNRESOLVED_USER_POLICY=fail-open); when many are not found, MONGO_URI most likely names "
                "another database than LibreChat's",
                identity.object_id,
                self._attributor.directory.location,
            )

    async def _admit(self, incoming: IncomingRequest, attribution: Attribution) -> Spender | None:
        """Refuse a request whose user or team has spent its budget; else its hold on their budgets."""
        if self._budgets is None or not attribution.resolved or incoming.route.name == "models":
            return None
        model = (incoming.fields or {}).get("model")
        model = model if isinstance(model, str) else None
        # About four bytes of a JSON body per prompt token.
        demand = Demand(model, len(incoming.body or b"") // 4, None)
        hold = await self._budgets.admit(attribution.email, attribution.team, demand)
        return Spender(hold, model)

    # Step 3: build the upstream request.

    def _upstream_request(
        self, incoming: IncomingRequest, attributed: Attributed, receive: Receive, record: AccessRecord
    ) -> UpstreamRequest:
        headers = incoming.headers
        content, content_length = self._content(incoming, receive)
        added = OutgoingHeaders(
            metadata=self._metadata(headers, attributed.attribution),
            request_id=None if headers.request_id is not None else record.request_id.encode(),
            content_length=content_length,
            # An answer whose cost counts against a budget must be readable for its usage.
            uncompressed=attributed.spender is not None and incoming.route.dialect.reports_usage,
        )
        return self._builder.build(incoming.method, incoming.url, headers.forward, added, content)

    def _metadata(self, headers: RequestHeaders, attribution: Attribution) -> bytes | None:
        if headers.metadata is None and headers.identity is None and not headers.has_body:
            # Names nobody and carries no body Portkey could take a `user` from: leave it as it came.
            return None
        return self._attributor.metadata_header(headers.metadata, attribution)

    def _content(self, incoming: IncomingRequest, receive: Receive) -> tuple[Content, bytes | None]:
        """The body to send upstream and its declared length; a streamed one sets `body_received` at its end."""
        headers, body = incoming.headers, incoming.body
        if incoming.streams_body:
            stream = stream_body(receive, incoming.body_received)
            if headers.content_length is None:
                return capped(stream, self._policy.body_limit), None
            return stream, headers.content_length
        if incoming.fields is not None and body is not None:
            body = incoming.route.dialect.request_body(body, incoming.fields, stream_usage=self._builder.stream_usage)
        return body, None

    # Step 4: exchange it with Portkey, and relay the answer.

    async def _exchange(
        self,
        request: UpstreamRequest,
        watch: CancelOnDisconnect,
        send: Send,
        record: AccessRecord,
        dialect: Dialect,
        spender: Spender | None,
    ) -> None:
        with self._upstream_slots:
            await watch.checkpoint()  # a client gone by now is never forwarded
            await self._send_and_relay(request, send, record, dialect, spender)

    async def _send_and_relay(
        self, request: UpstreamRequest, send: Send, record: AccessRecord, dialect: Dialect, spender: Spender | None
    ) -> None:
        sent_at = time.perf_counter()
        self._metrics.overhead_seconds.labels(record.route).observe(sent_at - record.started)
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as exc:
            raise error_before_response(exc, self._upstream) from None
        record.status = response.status_code
        record.trace_id = response.headers.get(TRACE_ID.decode(), "-")
        self._metrics.open_streams.inc()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": self._client_headers(response, record),
                }
            )
            await self._relay_body(response, send, record, sent_at, dialect, spender)
        except httpx.HTTPError as exc:
            # Headers are gone already: returning with the response incomplete makes the server
            # close the connection, so the client sees a truncated response, not a complete one.
            logger.warning("upstream failed mid-response: %s", type(exc).__name__)
        finally:
            self._metrics.open_streams.dec()
            self._metrics.upstream_seconds.labels(record.route).observe(time.perf_counter() - sent_at)
            await response.aclose()

    async def _relay_body(
        self,
        response: httpx.Response,
        send: Send,
        record: AccessRecord,
        sent_at: float,
        dialect: Dialect,
        spender: Spender | None,
    ) -> None:
        count_usage = (
            (self._metrics.per_user_tokens or spender is not None)
            and dialect.reports_usage
            and "content-encoding" not in response.headers
        )
        scanner = UsageScanner()
        first = True
        try:
            async for chunk in response.aiter_raw():
                if first:
                    self._metrics.first_byte_seconds.labels(record.route).observe(time.perf_counter() - sent_at)
                    first = False
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                finally:
                    if count_usage:
                        scanner.feed(chunk)  # after the send: reading usage never holds a chunk back
            await send({"type": "http.response.body", "body": b""})
        finally:
            # Also when the client left: usage that arrived from the upstream was paid for.
            if scanner.found and (usage := dialect.usage(scanner.reported)) is not None:
                self._count_usage(usage, record, spender)

    def _count_usage(self, usage: Usage, record: AccessRecord, spender: Spender | None) -> None:
        if self._metrics.per_user_tokens and record.resolved:
            self._metrics.usage(record.user, usage)
        if spender is not None and self._budgets is not None:
            self._budgets.settle(spender.hold, spender.model, usage)

    def _client_headers(self, response: httpx.Response, record: AccessRecord) -> RawHeaders:
        headers = response_headers(response.headers.raw, response.status_code)
        if REQUEST_ID.decode() not in response.headers:
            headers.append((REQUEST_ID, record.request_id.encode()))
        return headers
