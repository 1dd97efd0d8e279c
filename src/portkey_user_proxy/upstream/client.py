"""The one HTTP client that talks to Portkey (what its failures mean to the client: `answers.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.request import getproxies

import httpx

from ..headers import RawHeaders
from .proxies import environment_proxy
from .transport import LeanTransport, UpstreamResponse, WireRequest

# Node's default server keep-alive is 5 s (the self-hosted gateway runs on Node): close idle
# connections before the server does, so a request never lands on a socket being torn down.
_KEEPALIVE_EXPIRY_SECONDS = 4.0
_MAX_IDLE_CONNECTIONS = 256
# Routes through an HTTP_PROXY / HTTPS_PROXY / ALL_PROXY use httpx's own transport (httpcore), with
# the same keep-alive and, like the direct route, no cap on connections: every open stream holds one.
_PROXIED_LIMITS = httpx.Limits(
    max_connections=None, max_keepalive_connections=_MAX_IDLE_CONNECTIONS, keepalive_expiry=_KEEPALIVE_EXPIRY_SECONDS
)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """What per-request upstream code needs to know, resolved once at start-up."""

    target: str  # PORTKEY_URL without credentials: what error messages may name
    connect_timeout: float
    read_timeout: float
    unreachable_hint: str  # the settings to check when the upstream cannot be reached

    @classmethod
    def for_target(cls, target: str, *, connect_timeout: float, read_timeout: float) -> UpstreamPolicy:
        # The environment's proxies, read the way httpx reads them (urllib's getproxies).
        proxied = any(getproxies().get(scheme) for scheme in ("http", "https", "all"))
        return cls(
            target=target,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            unreachable_hint="check PORTKEY_URL, and HTTP(S)_PROXY / ALL_PROXY / NO_PROXY"
            if proxied
            else "check PORTKEY_URL",
        )


Content = bytes | AsyncIterator[bytes] | None


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """A request for Portkey, prepared: what `UpstreamClient.send` takes."""

    method: str
    url: httpx.URL
    headers: RawHeaders
    content: Content


class UpstreamClient:
    """Sends prepared requests to Portkey over the one route chosen at start-up.

    Requests go straight to the transport: no default headers, cookies, auth or redirects, which an
    httpx client would add or follow (a `Set-Cookie` it stored would be replayed across users). The
    lean transport takes them as they go on the wire, without an `httpx.Request` (building one
    normalises and copies every header twice); any other transport gets an `httpx.Request`.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout) -> None:
        self._transport = transport
        self._lean = transport if isinstance(transport, LeanTransport) else None
        self._timeouts = timeout.as_dict()
        self._extensions = {"timeout": self._timeouts}

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """The response, its body unread (`aiter_raw`, then `aclose` to free the connection)."""
        if self._lean is not None:
            wire = WireRequest.prepare(request.method, request.url, request.headers, request.content, self._timeouts)
            return await self._lean.send(wire)
        sent = httpx.Request(
            request.method, request.url, headers=request.headers, content=request.content, extensions=self._extensions
        )
        response = await self._transport.handle_async_request(sent)
        response.request = sent
        return UpstreamResponse.of_httpx(response)

    async def aclose(self) -> None:
        await self._transport.aclose()


def build_upstream_client(url: httpx.URL, *, connect_timeout: float, read_timeout: float) -> UpstreamClient:
    timeout = httpx.Timeout(
        connect=connect_timeout,
        # Reasoning models think for minutes before their first byte: the read timeout is long.
        read=read_timeout,
        write=read_timeout,
        pool=connect_timeout,
    )
    proxy = environment_proxy(url)
    transport: httpx.AsyncBaseTransport
    if proxy is None:
        # Every open stream holds its own connection, so the number of connections is not capped.
        transport = LeanTransport(max_idle=_MAX_IDLE_CONNECTIONS, keepalive_expiry=_KEEPALIVE_EXPIRY_SECONDS)
    else:
        # trust_env: SSL_CERT_FILE and SSL_CERT_DIR apply, as they do on the direct route.
        transport = httpx.AsyncHTTPTransport(proxy=proxy, limits=_PROXIED_LIMITS, trust_env=True)
    return UpstreamClient(transport, timeout)
