"""The life of one proxied request, in four steps, each reading and adding to the request's `Exchange`.

1. Read the incoming request: its headers, its target, and its JSON body when its family names the
   user there (`inbound`, `dialects`).
2. Attribute it: who is asking, looked up in LibreChat's MongoDB, and whose budgets its answer costs;
   or refuse it (`attribution`, `budgets`).
3. Build the upstream request: every header the proxy adds, and the body as it goes on (`upstream.request`).
4. Exchange it with Portkey and relay the answer, streaming, reading what it costs as it passes;
   then charge it: the usage it reported, or an estimate when the client left first (`dialects.meter`).

Everything that is not the proxy's own route goes to `PORTKEY_URL` + path + query; the host a request
names is never used.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx

from .answers import answer_for, error_before_response, refusal
from .asgi import Receive, Scope, Send
from .attribution.decision import Attribution, AttributionOutcome, Attributor
from .attribution.directory import LookupOutcome
from .attribution.identity import Identity, identify
from .budgets import Budgets, Demand, Hold
from .dialects import Route, route_for
from .dialects.fields import json_fields
from .dialects.meter import AnswerMeter, Readability, Reading, prompt_tokens, readability
from .dialects.multipart import HEAD_BYTES, form_field, is_form
from .dialects.usage import Usage
from .errors import ProxyError, send_error
from .headers import (
    REQUEST_ID,
    TRACE_ID,
    RawHeaders,
    RequestHeaders,
    new_request_id,
    response_headers,
    split_request_headers,
)
from .inbound.auth import InboundKey
from .inbound.body import ClientDisconnected, read_body, stream_body
from .inbound.client import CancelOnDisconnect, ClientStalled, TimedSend, client_connection
from .inbound.last_resort import internal_error
from .inbound.limits import UpstreamSlots, capped, check_declared_length
from .inbound.server import ClientConnection
from .inbound.target import upstream_url
from .observability.logs import AccessRecord, RateLimitedWarnings, logger
from .observability.metrics import Metrics
from .upstream.client import Content, UpstreamClient, UpstreamPolicy, UpstreamRequest
from .upstream.request import OutgoingHeaders, UpstreamRequestBuilder
from .upstream.transport import UpstreamResponse

# The access log's status for clients that left before the response ended (nginx's convention).
CLIENT_CLOSED = 499
# Failures before a request could reach the upstream: no connection was made, so nothing was generated.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)


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
    body: bytes | None  # the body, read whole when the route's family names the user in it
    fields: dict[str, object] | None  # the body's fields the family reads; None when not a JSON object
    body_received: asyncio.Event  # set once the client has sent all of its body

    @property
    def streams_body(self) -> bool:
        """Whether a body is still to come from the client, streamed upstream as it arrives."""
        return self.body is None and self.headers.has_body


@dataclass(frozen=True, slots=True)
class Charge:
    """Step 2's word on the budgets: what is held of them while the answer is in flight."""

    hold: Hold
    prompt_tokens: int  # estimated from the body: the prompt's share of an estimate


class Answer(enum.Enum):
    """How far the upstream's answer got: what a charge can be based on."""

    NOT_SENT = "not_sent"  # the request never reached the upstream: nothing to charge
    AWAITED = "awaited"  # sent; no answer yet
    NO_ANSWER = "no_answer"  # sent, and no answer came (a timeout, the connection lost)
    RELAYING = "relaying"  # the answer's head went to the client; its body is passing
    COMPLETE = "complete"  # relayed to its end
    CLIENT_LEFT = "client_left"  # the client left (or stalled) before the end
    UPSTREAM_FAILED = "upstream_failed"  # the upstream failed before the end


@dataclass(slots=True)
class Exchange:
    """One proxied request on its way through the four steps: what each step found, and decided once."""

    route: Route
    record: AccessRecord
    send: TimedSend
    incoming: IncomingRequest | None = None
    attribution: Attribution | None = None
    charge: Charge | None = None  # None: the answer costs nobody's budget
    model: str | None = None  # the model the request asks for (body, path or form), when it names one
    reads_usage: bool = False  # whether the answer's usage is read: for a charge, or per-user token metrics
    answer: Answer = Answer.NOT_SENT
    status: int = 0  # the upstream's status, once it answered
    reading: Reading | None = None  # what the answer said of its cost; None: not read, or unreadable


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
        connection = client_connection(scope)
        send = TimedSend(send, self._policy.write_timeout, connection["abort"] if connection else None)
        exchange = Exchange(route, record, send)
        try:
            await self._proxy(exchange, scope, receive, connection)
        except ClientDisconnected:
            record.status = CLIENT_CLOSED
        except ClientStalled:
            record.status = CLIENT_CLOSED
            self._warnings.warn(
                "client-stalled", "cut short a response its client stopped reading (RESPONSE_WRITE_TIMEOUT_SECONDS)"
            )
        except Exception as exc:
            await self._answer_failure(exchange, exc)
        finally:
            exchange.send.close()
            self._metrics.requests_of(record.route, str(record.status)).inc()
            record.emit()

    async def _proxy(
        self, exchange: Exchange, scope: Scope, receive: Receive, connection: ClientConnection | None
    ) -> None:
        incoming = exchange.incoming = await self._read_request(exchange, scope, receive)
        # A client that leaves is noticed from the end of its body on, its user's lookup included.
        departure = connection["departure"] if connection else None
        async with CancelOnDisconnect(receive, incoming.body_received, departure, exchange.send.task) as watch:
            try:
                await self._attribute(exchange)
                request = self._upstream_request(exchange, receive)
                with self._upstream_slots:
                    await watch.checkpoint()  # a client gone by now is never forwarded
                    await self._exchange(exchange, request)
            finally:
                self._charge(exchange)
        if watch.disconnected:
            exchange.record.status = CLIENT_CLOSED

    async def _answer_failure(self, exchange: Exchange, exc: Exception) -> None:
        record = exchange.record
        error = answer_for(exc)
        if error is None:  # the last resort: a bug ends this request, never the server
            error = internal_error(exc, record.method, record.route)
            if exchange.send.started:  # too late for an error response: the client sees it cut short
                self._metrics.errors.labels(record.route, error.code).inc()
                return
        await self._answer_error(exchange, error)

    async def _answer_error(self, exchange: Exchange, error: ProxyError) -> None:
        record = exchange.record
        record.status = error.status
        self._metrics.errors.labels(record.route, error.code).inc()
        await send_error(exchange.send, error, ((REQUEST_ID, record.request_id.encode()),))

    # Step 1: read the incoming request.

    async def _read_request(self, exchange: Exchange, scope: Scope, receive: Receive) -> IncomingRequest:
        key = self._policy.inbound_key
        raw = scope["headers"] if key is None else key.admit(scope["headers"])
        headers = split_request_headers(raw, self._policy.identity_header)
        check_declared_length(headers, self._policy.body_limit)
        exchange.record.request_id = headers.request_id or new_request_id()
        url = self._url(scope)
        body, fields = await self._read_json_body(exchange.route, headers, receive)
        incoming = IncomingRequest(scope["method"], url, headers, body, fields, asyncio.Event())
        if not incoming.streams_body:
            incoming.body_received.set()
        return incoming

    def _url(self, scope: Scope) -> httpx.URL:
        # raw_path keeps the client's percent-encoding; it never carries a scheme or host.
        path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        return upstream_url(self._policy.portkey_url, self._base_path, path, scope.get("query_string", b""))

    async def _read_json_body(
        self, route: Route, headers: RequestHeaders, receive: Receive
    ) -> tuple[bytes | None, dict[str, object] | None]:
        # A body without a Content-Type is read too: Portkey takes it as JSON, so its user must be found.
        if not (route.dialect.reads_body and headers.has_body and (headers.is_json or not headers.content_type)):
            return None, None
        body = await read_body(receive, self._policy.body_limit)
        return body, json_fields(body)

    # Step 2: attribute it, and admit it against its budgets; or refuse it.

    async def _attribute(self, exchange: Exchange) -> None:
        incoming = exchange.incoming
        assert incoming is not None
        dialect = exchange.route.dialect
        identity = identify(incoming.headers.identity, *dialect.identity_fields(incoming.fields or {}))
        attribution = exchange.attribution = await self._attributor.attribute(identity)
        self._note_attribution(exchange.record, identity, attribution)
        if attribution.rejected:
            logger.info("refused the user id %s (%s)", identity.for_logs(), attribution.reason)
            raise refusal(attribution)
        exchange.charge = await self._admit(exchange, incoming, attribution)
        exchange.reads_usage = exchange.charge is not None or (self._metrics.per_user_tokens and attribution.resolved)

    def _note_attribution(self, record: AccessRecord, identity: Identity, attribution: Attribution) -> None:
        record.user = attribution.user_value or "-"
        record.resolved = attribution.resolved
        record.attribution = f"{attribution.outcome}:{attribution.reason}"
        self._metrics.attributions_of(attribution.outcome.value, attribution.reason).inc()
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

    async def _admit(self, exchange: Exchange, incoming: IncomingRequest, attribution: Attribution) -> Charge | None:
        """Refuse a request over its user's or team's budget; else what it holds of them while in flight.

        A request whose user or team MongoDB cannot tell right now may have a budget nobody can check:
        BUDGET_STORE_FAILURE says whether it goes on (`allow`, unbudgeted) or is refused (`deny`).
        """
        budgets = self._budgets
        if budgets is None or not exchange.route.charged or incoming.method != "POST":
            return None
        if attribution.directory_failed or (attribution.team_unread and budgets.has_team_budgets):
            unknown = budgets.refuse_unknown()
            if unknown is not None:
                raise unknown
        if not attribution.resolved:
            return None
        fields = incoming.fields or {}
        model = exchange.model = exchange.route.dialect.requested_model(exchange.record.path, fields)
        demand = Demand(model, prompt_tokens(incoming.body), _max_output_tokens(fields))
        hold = await budgets.admit(attribution.email, attribution.team, demand, attribution.groups)  # or refused
        return Charge(hold, demand.prompt_tokens)

    # Step 3: build the upstream request.

    def _upstream_request(self, exchange: Exchange, receive: Receive) -> UpstreamRequest:
        incoming, attribution = exchange.incoming, exchange.attribution
        assert incoming is not None and attribution is not None
        headers = incoming.headers
        content, content_length = self._content(exchange, incoming, receive)
        added = OutgoingHeaders(
            metadata=self._metadata(headers, attribution),
            request_id=None if headers.request_id is not None else exchange.record.request_id.encode(),
            content_length=content_length,
            # An answer whose cost counts against a budget must be readable for its usage.
            uncompressed=exchange.charge is not None,
        )
        return self._builder.build(incoming.method, incoming.url, headers.forward, added, content)

    def _metadata(self, headers: RequestHeaders, attribution: Attribution) -> bytes | None:
        if headers.metadata is None and headers.identity is None and not headers.has_body:
            # Names nobody and carries no body Portkey could take a `user` from: leave it as it came.
            return None
        return self._attributor.metadata_header(headers.metadata, attribution)

    def _content(self, exchange: Exchange, incoming: IncomingRequest, receive: Receive) -> tuple[Content, bytes | None]:
        """The body to send upstream and its declared length; a streamed one sets `body_received` at its end."""
        if incoming.streams_body:
            stream = stream_body(receive, incoming.body_received)
            if exchange.charge is not None and exchange.model is None and is_form(incoming.headers.content_type):
                stream = _reading_form_model(stream, exchange)
            if incoming.headers.content_length is None:
                return capped(stream, self._policy.body_limit), None
            return stream, incoming.headers.content_length
        body = incoming.body
        if incoming.fields is not None and body is not None:
            charged = exchange.charge is not None
            body = self._builder.body(exchange.route.dialect, body, incoming.fields, charged=charged)
        return body, None

    # Step 4: exchange it with Portkey, and relay the answer.

    async def _exchange(self, exchange: Exchange, request: UpstreamRequest) -> None:
        record = exchange.record
        sent_at = time.perf_counter()
        self._metrics.overhead_seconds_of(record.route).observe(sent_at - record.started)
        exchange.answer = Answer.AWAITED
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as exc:
            exchange.answer = Answer.NOT_SENT if isinstance(exc, _NEVER_SENT) else Answer.NO_ANSWER
            raise error_before_response(exc, self._upstream) from None
        except BaseException:
            exchange.answer = Answer.CLIENT_LEFT
            raise
        record.status = exchange.status = response.status_code
        trace_id = response.header(TRACE_ID)
        record.trace_id = _header_text(trace_id) if trace_id is not None else "-"
        self._metrics.open_streams.inc()
        try:
            await exchange.send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": self._client_headers(response, record),
                }
            )
            exchange.answer = Answer.RELAYING
            await self._relay_body(exchange, response, sent_at)
        except httpx.HTTPError as exc:
            # Headers are gone already: returning with the response incomplete makes the server
            # close the connection, so the client sees a truncated response, not a complete one.
            exchange.answer = Answer.UPSTREAM_FAILED
            logger.warning("upstream failed mid-response: %s", type(exc).__name__)
        finally:
            if exchange.answer is Answer.AWAITED or exchange.answer is Answer.RELAYING:
                exchange.answer = Answer.CLIENT_LEFT  # cancelled, or cut off for stalling
            self._metrics.open_streams.dec()
            self._metrics.upstream_seconds_of(record.route).observe(time.perf_counter() - sent_at)
            await response.aclose()

    async def _relay_body(self, exchange: Exchange, response: UpstreamResponse, sent_at: float) -> None:
        meter = self._meter(exchange, response)
        first = True
        try:
            async for chunk in response.aiter_raw():
                if first:
                    first_byte = time.perf_counter() - sent_at
                    self._metrics.first_byte_seconds_of(exchange.record.route).observe(first_byte)
                    first = False
                try:
                    await exchange.send({"type": "http.response.body", "body": chunk, "more_body": True})
                finally:
                    if meter is not None:
                        meter.feed(chunk)  # after the send: reading usage never holds a chunk back
            await exchange.send({"type": "http.response.body", "body": b""})
            exchange.answer = Answer.COMPLETE
        finally:
            # Also when the client left: what arrived from the upstream was paid for.
            exchange.reading = meter.reading() if meter is not None else None

    def _meter(self, exchange: Exchange, response: UpstreamResponse) -> AnswerMeter | None:
        if not exchange.reads_usage:
            return None
        content_type = response.header(b"content-type")
        encoding = response.header(b"content-encoding")
        if readability(content_type, encoding) is not Readability.READABLE:
            return None
        return AnswerMeter(exchange.route.dialect, content_type, encoding)

    # After step 4: charge the answer to the budgets it was admitted against.

    def _charge(self, exchange: Exchange) -> None:
        """Count the answer's usage; charge what it cost, or an estimate of it, or release what it held."""
        reading = exchange.reading
        usage = reading.usage if reading is not None else None
        if usage is not None and exchange.reads_usage and exchange.record.resolved and self._metrics.per_user_tokens:
            self._metrics.usage(exchange.record.user, usage)
        charge, budgets = exchange.charge, self._budgets
        if charge is None or budgets is None:
            return
        answer = exchange.answer
        refused = exchange.status >= 300 and usage is None  # an upstream error is not billed
        if answer is Answer.NOT_SENT or refused:
            budgets.release(charge.hold)
            return
        requested = exchange.model
        model = (reading.model if reading is not None else None) or requested
        if answer is Answer.COMPLETE and usage is not None:
            budgets.settle(charge.hold, model, usage, requested=requested)
            return
        if not exchange.status:
            # Sent, and no answer began: the provider may generate it whole all the same.
            budgets.settle_held(charge.hold, estimated=answer.value)
            return
        if answer is Answer.COMPLETE:
            reason = "no_usage" if reading is not None else "unreadable"
            self._warnings.warn(
                f"estimated-{exchange.route.name}",
                "an answer on the %s route carried no usage the proxy could read (%s): its cost is estimated "
                "from the request and the answer's length",
                exchange.route.name,
                reason,
            )
        else:
            reason = answer.value
        budgets.settle(charge.hold, model, _estimate(charge, reading), estimated=reason, requested=requested)

    def _client_headers(self, response: UpstreamResponse, record: AccessRecord) -> RawHeaders:
        headers = response_headers(response.headers, response.status_code)
        if response.header(REQUEST_ID) is None:
            headers.append((REQUEST_ID, record.request_id.encode()))
        return headers


def _header_text(value: bytes) -> str:
    """A header's value as text, decoded as httpx decodes it: ASCII, else UTF-8, else Latin-1."""
    for encoding in ("ascii", "utf-8"):
        try:
            return value.decode(encoding)
        except UnicodeDecodeError:
            continue
    return value.decode("latin-1")


def _estimate(charge: Charge, reading: Reading | None) -> Usage:
    """The usage of an answer that never reported it whole: what it reported so far, else the estimates."""
    reported = reading.usage if reading is not None else None
    relayed = reading.output_tokens if reading is not None else 0
    if reported is None:
        return Usage(charge.prompt_tokens, relayed, charge.prompt_tokens + relayed)
    # Anthropic reports its input at the start of a stream: only the output is left to estimate.
    prompt = reported.prompt if reported.prompt is not None else charge.prompt_tokens
    completion = max(reported.completion or 0, relayed)
    return replace(reported, prompt=prompt, completion=completion, total=prompt + completion)


async def _reading_form_model(chunks: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
    """A form body as it streams through, its `model` field noted on the way (see `dialects.multipart`)."""
    head = b""
    async for chunk in chunks:
        if exchange.model is None and len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
            exchange.model = form_field(head, b"model")
        yield chunk


def _max_output_tokens(fields: dict[str, object]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
