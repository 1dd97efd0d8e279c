"""The one HTTP client that talks to Portkey, and what its failures mean to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.request import getproxies

import httpx

from ..errors import ProxyError
from .transport import LeanTransport

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


class _NoCookies(httpx.Cookies):
    """httpx stores `Set-Cookie` in its client and replays it on later requests, across users."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # also skips building urllib's request objects for each response

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _UpstreamClient(httpx.AsyncClient):
    """An httpx client that adds nothing to requests (no cookies, no default headers).

    No `transport=` is passed to httpx: it then mounts the environment's proxies (`HTTP_PROXY`,
    `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) exactly as for any httpx client, and only the direct
    route, the one httpx would give its own default transport, gets the lean transport.
    """

    _no_cookies = _NoCookies()

    def __init__(self, direct: httpx.AsyncBaseTransport, **options: Any) -> None:
        self._direct = direct
        super().__init__(**options)

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport:
        return self._direct

    @property
    def headers(self) -> httpx.Headers:
        return self._headers

    @headers.setter
    def headers(self, headers: Any) -> None:
        # httpx's own setter adds `accept`, `accept-encoding`, `connection` and `user-agent` to every
        # request: an upstream asked for gzip would send it to clients that never asked for it.
        self._headers = httpx.Headers(headers)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("the upstream client keeps no cookies")


def build_http_client(*, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=connect_timeout,
        # Reasoning models think for minutes before their first byte: the read timeout is long.
        read=read_timeout,
        write=read_timeout,
        pool=connect_timeout,
    )
    # Every open stream holds its own connection, so the number of connections is not capped.
    direct = LeanTransport(max_idle=_MAX_IDLE_CONNECTIONS, keepalive_expiry=_KEEPALIVE_EXPIRY_SECONDS)
    return _UpstreamClient(direct, timeout=timeout, limits=_PROXIED_LIMITS, follow_redirects=False)


def error_before_response(exc: httpx.HTTPError, policy: UpstreamPolicy) -> ProxyError:
    """What the client is told when the upstream failed before sending response headers."""
    target = policy.target
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"could not connect to the upstream {target} within {policy.connect_timeout:g} s"
        return ProxyError(502, message, "upstream_unreachable")
    if isinstance(exc, httpx.ProxyError):  # the environment's proxy refused the tunnel (407, 403, ...)
        message = f"the proxy refused the connection to the upstream {target} ({policy.unreachable_hint})"
        return ProxyError(502, message, "upstream_unreachable")
    if isinstance(exc, httpx.ConnectError):
        message = f"the upstream {target} is unreachable ({policy.unreachable_hint})"
        return ProxyError(502, message, "upstream_unreachable")
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        limit = policy.read_timeout
        message = f"the upstream {target} sent no response within {limit:g} s (UPSTREAM_READ_TIMEOUT_SECONDS)"
        return ProxyError(504, message, "upstream_timeout")
    if isinstance(exc, httpx.PoolTimeout):
        return ProxyError(503, "too many requests are waiting for an upstream connection", "upstream_busy")
    return ProxyError(502, f"the upstream {target} failed: {type(exc).__name__}", "upstream_error")
