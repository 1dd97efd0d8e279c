"""The one HTTP client that talks to Portkey, and what its failures mean to the caller."""

from __future__ import annotations

import httpx

from .errors import ProxyError
from .settings import Settings
from .transport import LeanTransport

# Node's default server keep-alive is 5 s (the self-hosted gateway runs on Node): close idle
# connections before the server does, so a request never lands on a socket being torn down.
_KEEPALIVE_EXPIRY_SECONDS = 4.0


class _NoCookies(httpx.Cookies):
    """httpx stores `Set-Cookie` in its client and replays it on later requests, across users."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # also skips building urllib's request objects for each response

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _UpstreamClient(httpx.AsyncClient):
    """An httpx client whose cookie store is always empty."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("the upstream client keeps no cookies")


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.upstream_connect_timeout_seconds,
        # Reasoning models think for minutes before their first byte: the read timeout is long.
        read=settings.upstream_read_timeout_seconds,
        write=settings.upstream_read_timeout_seconds,
        pool=settings.upstream_connect_timeout_seconds,
    )
    # Every open stream holds its own connection, so the number of connections is not capped.
    transport = LeanTransport(max_idle=256, keepalive_expiry=_KEEPALIVE_EXPIRY_SECONDS)
    client = _UpstreamClient(transport=transport, timeout=timeout, follow_redirects=False)
    # No default headers (httpx's accept, accept-encoding, user-agent): the client's own pass through.
    client.headers = httpx.Headers()
    return client


def error_before_response(exc: httpx.HTTPError, settings: Settings) -> ProxyError:
    """What the client is told when the upstream failed before sending response headers."""
    target = settings.portkey_url_for_humans
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"could not connect to the upstream {target} within {settings.upstream_connect_timeout_seconds:g} s"
        return ProxyError(502, message, "upstream_unreachable")
    if isinstance(exc, httpx.ConnectError):
        return ProxyError(502, f"the upstream {target} is unreachable (check PORTKEY_URL)", "upstream_unreachable")
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        limit = settings.upstream_read_timeout_seconds
        message = f"the upstream {target} sent no response within {limit:g} s (UPSTREAM_READ_TIMEOUT_SECONDS)"
        return ProxyError(504, message, "upstream_timeout")
    if isinstance(exc, httpx.PoolTimeout):
        return ProxyError(503, "too many requests are waiting for an upstream connection", "upstream_busy")
    return ProxyError(502, f"the upstream {target} failed: {type(exc).__name__}", "upstream_error")
