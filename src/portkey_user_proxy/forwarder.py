"""The life of one proxied request, start to end.

settings → identity → user directory → metadata → forward. Everything that is not the proxy's own
route goes to `PORTKEY_URL` + path + query; the host a request names is never used.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from .asgi import Receive, Scope, Send
from .attribution.decision import Attribution, AttributionOutcome, attribute
from .attribution.directory import UserDirectory
from .attribution.identity import Identity, identify
from .attribution.metadata import build_metadata
from .attribution.teams import OwnedKeys
from .attribution.user_value import user_value_of
from .dialects import Dialect, dialect_for
from .dialects.fields import json_fields
from .dialects.usage import UsageScanner
from .errors import ProxyError, send_error
from .headers import (
    METADATA,
    REQUEST_ID,
    TRACE_ID,
    RawHeaders,
    RequestHeaders,
    response_headers,
    split_request_headers,
)
from .inbound.auth import inbound_key
from .inbound.body import BodyTooLarge, ClientDisconnected, read_body, stream_body
from .inbound.client_writes import ClientStalled, TimedSend
from .inbound.disconnects import CancelOnDisconnect
from .inbound.last_resort import WatchedSend, internal_error
from .inbound.limits import UpstreamSlots, capped, check_declared_length, too_large
from .inbound.target import upstream_url
from .observability.logs import AccessRecord, RateLimitedWarnings, loggable, logger
from .observability.metrics import Metrics, route_class
from .settings import Settings, UnresolvedUserPolicy
from .upstream.client import UpstreamPolicy, error_before_response
from .upstream.portkey_defaults import portkey_defaults
from .upstream.traces import conversation_trace

# The access log's status for clients that left before the response ended (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class ForwardingPolicy:
    """What the forwarder reads from the settings on each request, resolved once at start-up."""

    identity_header: bytes
    body_limit: int
    unresolved_users: UnresolvedUserPolicy
    stream_usage: bool
    owned_keys: OwnedKeys
    write_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ForwardingPolicy:
        return cls(
            identity_header=settings.user_id_header.encode("latin-1"),
            body_limit=settings.max_request_body_bytes,
            unresolved_users=settings.unresolved_user_policy,
            stream_usage=settings.include_stream_usage,
            owned_keys=OwnedKeys.from_settings(settings),
            write_timeout=settings.response_write_timeout_seconds,
        )


class Forwarder:
    def __init__(
        self, settings: Settings, directory: UserDirectory, client: httpx.AsyncClient, metrics: Metrics
    ) -> None:
        self._policy = ForwardingPolicy.from_settings(settings)
        self._directory = directory
        self._client = client
        self._metrics = metrics
        base = httpx.URL(settings.portkey_url)
        self._base = base
        self._base_path = base.raw_path.rstrip(b"/")
        self._warnings = RateLimitedWarnings()
        self._inbound_key = inbound_key(settings)
        self._user_value = user_value_of(settings.portkey_user_value, settings.user_hash_secret)
        self._conversation_trace = conversation_trace(settings)
        self._portkey_defaults = portkey_defaults(settings)
        self._upstream_slots = UpstreamSlots(settings.max_concurrent_upstream_requests)
        self._upstream_policy = UpstreamPolicy.from_settings(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        record = AccessRecord(scope["method"], path, time.perf_counter(), route=route_class(path))
        watched = WatchedSend(TimedSend(send, self._policy.write_timeout))
        try:
            await self._proxy(scope, receive, watched, record)
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
            self._metrics.requests.labels(record.route, str(record.status)).inc()
            record.emit()

    async def _answer_error(self, send: Send, error: ProxyError, record: AccessRecord) -> None:
        record.status = error.status
        self._metrics.errors.labels(record.route, error.code).inc()
        await send_error(send, error, ((REQUEST_ID, record.request_id.encode()),))

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, record: AccessRecord) -> None:
        raw = scope["headers"] if self._inbound_key is None else self._inbound_key.admit(scope["headers"])
        headers = split_request_headers(raw, self._policy.identity_header)
        check_declared_length(headers, self._policy.body_limit)
        record.request_id = headers.request_id or uuid.uuid4().hex
        url = self._url(scope)
        dialect = dialect_for(scope["path"])
        body, parsed = await self._read_json_body(headers, receive, dialect)
        identity = identify(headers.identity, *dialect.identity_fields(parsed or {}))
        attribution = await attribute(identity, self._directory, self._policy.unresolved_users, self._user_value)
        self._note_attribution(record, identity, attribution)
        if attribution.rejected:
            logger.info("refused the user id %s (%s)", loggable(identity.raw or "-"), attribution.reason)
            raise _refusal(attribution)

        outgoing = self._outgoing_headers(headers, attribution, record)
        content, body_received = self._request_content(dialect, receive, headers, body, parsed, outgoing)
        del parsed  # a stream can last minutes: its parsed body need not live as long
        request = self._client.build_request(scope["method"], url, headers=outgoing, content=content)
        with self._upstream_slots:
            async with CancelOnDisconnect(receive, body_received) as watch:
                await self._exchange(request, send, record, dialect)
        if watch.disconnected:
            record.status = CLIENT_CLOSED

    async def _exchange(self, request: httpx.Request, send: Send, record: AccessRecord, dialect: Dialect) -> None:
        sent_at = time.perf_counter()
        self._metrics.overhead_seconds.labels(record.route).observe(sent_at - record.started)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise error_before_response(exc, self._upstream_policy) from None
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
            await self._relay_body(response, send, record, sent_at, dialect)
        except httpx.HTTPError as exc:
            # Headers are gone already: returning with the response incomplete makes the server
            # close the connection, so the client sees a truncated response, not a complete one.
            logger.warning("upstream failed mid-response: %s", type(exc).__name__)
        finally:
            self._metrics.open_streams.dec()
            self._metrics.upstream_seconds.labels(record.route).observe(time.perf_counter() - sent_at)
            await response.aclose()

    async def _relay_body(
        self, response: httpx.Response, send: Send, record: AccessRecord, sent_at: float, dialect: Dialect
    ) -> None:
        count_usage = (
            self._metrics.per_user_tokens and dialect.reports_usage and "content-encoding" not in response.headers
        )
        scanner = UsageScanner()
        first = True
        async for chunk in response.aiter_raw():
            if first:
                self._metrics.first_byte_seconds.labels(record.route).observe(time.perf_counter() - sent_at)
                first = False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if count_usage:
                scanner.feed(chunk)  # after the send: reading usage never holds a chunk back
        await send({"type": "http.response.body", "body": b""})
        usage = dialect.usage(scanner.reported) if scanner.found else None
        if usage is not None and record.resolved:
            self._metrics.usage(record.user, usage)

    def _client_headers(self, response: httpx.Response, record: AccessRecord) -> RawHeaders:
        headers = response_headers(response.headers.raw, response.status_code)
        if REQUEST_ID.decode() not in response.headers:
            headers.append((REQUEST_ID, record.request_id.encode()))
        return headers

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

    def _request_content(
        self,
        dialect: Dialect,
        receive: Receive,
        headers: RequestHeaders,
        body: bytes | None,
        parsed: dict[str, object] | None,
        outgoing: RawHeaders,
    ) -> tuple[bytes | AsyncIterator[bytes] | None, asyncio.Event]:
        """The body to send upstream, and an event set once the client has sent all of it."""
        body_received = asyncio.Event()
        if body is None and headers.has_body:
            stream = stream_body(receive, body_received)
            if headers.content_length is None:
                return capped(stream, self._policy.body_limit), body_received
            outgoing.append((b"content-length", headers.content_length))
            return stream, body_received
        body_received.set()
        if parsed is not None and body is not None:
            body = dialect.request_body(body, parsed, stream_usage=self._policy.stream_usage)
        return body, body_received

    def _outgoing_headers(self, headers: RequestHeaders, attribution: Attribution, record: AccessRecord) -> RawHeaders:
        outgoing = self._with_metadata(headers, attribution)
        if self._conversation_trace is not None:
            outgoing = self._conversation_trace.apply(outgoing)
        if self._portkey_defaults is not None:
            outgoing = self._portkey_defaults.apply(outgoing)
        if headers.request_id is None:
            outgoing.append((REQUEST_ID, record.request_id.encode()))
        return outgoing

    def _with_metadata(self, headers: RequestHeaders, attribution: Attribution) -> RawHeaders:
        if headers.metadata is None and headers.identity is None and not headers.has_body:
            # Names nobody and carries no body Portkey could take a `user` from: leave it as it came.
            return list(headers.forward)
        owned = self._policy.owned_keys.values(attribution.team, attribution.tenant, user_known=attribution.resolved)
        metadata = build_metadata(
            headers.metadata, attribution.user_value, attribution.fields, owned.deferred, owned.imposed
        )
        if metadata.problem:
            self._warnings.warn("metadata", "%s", metadata.problem)
        if metadata.placeholders_filled:
            self._warnings.warn(
                "metadata-placeholder",
                "LibreChat sent unresolved placeholders in x-portkey-metadata; filled them from the user record",
            )
        return [*headers.forward, (METADATA, metadata.header.encode("ascii"))]

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

    def _url(self, scope: Scope) -> httpx.URL:
        # raw_path keeps the client's percent-encoding; it never carries a scheme or host.
        path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        return upstream_url(self._base, self._base_path, path, scope.get("query_string", b""))


def _refusal(attribution: Attribution) -> ProxyError:
    if attribution.status == 503:
        message = "the user directory (LibreChat's MongoDB) is unavailable and UNRESOLVED_USER_POLICY is fail-closed"
        return ProxyError(503, message, "user_lookup_unavailable", headers=((b"retry-after", b"5"),))
    reason = attribution.reason
    message = f"this request's user could not be identified ({reason}) and UNRESOLVED_USER_POLICY is fail-closed"
    return ProxyError(403, message, "user_not_identified")
