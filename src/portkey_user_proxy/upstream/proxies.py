"""The proxy the environment names for PORTKEY_URL, chosen as httpx chooses it for any client.

HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (read through urllib's `getproxies`, as httpx reads them) route
by scheme; NO_PROXY entries take hosts off the proxy: `*` every host, `example.com` the domain and
its subdomains, `.example.com` the subdomains only, an address or `localhost` itself, and
`http://host:port` that exact origin. Of the routes that match, the most specific wins: one with a
port, then the longest host, then a named scheme. Every request goes to the same origin, so the
choice is made once, at start-up, where `check_environment_proxy` refuses a proxy httpx cannot use.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.request import getproxies

import httpx

_SOCKS_SCHEMES = ("socks5", "socks5h")
_PROXY_SCHEMES = ("http", "https", *_SOCKS_SCHEMES)  # what httpx's transport accepts
_MAX_PORT = 65535


class ProxySettingError(ValueError):
    """A proxy variable httpx cannot use; the message never quotes its value (it may hold credentials)."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Route:
    scheme: str  # "" for every scheme
    host: str  # "" for every host
    host_pattern: re.Pattern[str] | None
    port: int | None
    proxy: str | None  # None: straight to the origin
    variable: str  # the environment variable the route comes from

    @classmethod
    def parse(cls, pattern: str, proxy: str | None, variable: str) -> _Route:
        try:
            url = httpx.URL(pattern)
        except httpx.InvalidURL:
            raise ProxySettingError(variable, "holds an entry that is not a host, domain, address or URL") from None
        host = "" if url.host == "*" else url.host
        return cls("" if url.scheme == "all" else url.scheme, host, _host_pattern(host), url.port, proxy, variable)

    def matches(self, url: httpx.URL) -> bool:
        return (
            (not self.scheme or self.scheme == url.scheme)
            and (self.host_pattern is None or self.host_pattern.match(url.host) is not None)
            and (self.port is None or self.port == url.port)
        )

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (0 if self.port is not None else 1, -len(self.host), -len(self.scheme))


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy URL to reach `url` through, or None to reach it directly."""
    route = _chosen_route(url)
    return None if route is None else route.proxy


def check_environment_proxy(url: httpx.URL) -> None:
    """Raises ProxySettingError, naming the variable, when the proxy chosen for `url` cannot carry requests.

    httpx would refuse it when the client is built (an unknown scheme, SOCKS without its package) or on
    every connection (a port out of range): at start-up it is one line, not a traceback per request.
    """
    route = _chosen_route(url)
    if route is None or route.proxy is None:
        return
    try:
        proxy = httpx.URL(route.proxy)
    except httpx.InvalidURL:
        raise ProxySettingError(route.variable, "is not a valid URL, e.g. http://proxy.internal:3128") from None
    if proxy.scheme not in _PROXY_SCHEMES or not proxy.host:
        raise ProxySettingError(route.variable, "must be an http://, https:// or socks5:// URL with a host")
    if proxy.port is not None and not 1 <= proxy.port <= _MAX_PORT:
        raise ProxySettingError(route.variable, f"must have a port from 1 to {_MAX_PORT}")
    if proxy.scheme in _SOCKS_SCHEMES and importlib.util.find_spec("socksio") is None:
        raise ProxySettingError(
            route.variable,
            "names a SOCKS proxy, which needs httpx[socks] (the socksio package), not installed here: "
            "use an http:// proxy, or install httpx[socks]",
        )


def _chosen_route(url: httpx.URL) -> _Route | None:
    matching = [route for route in _environment_routes() if route.matches(url)]
    if not matching:
        return None
    return min(matching, key=lambda route: route.specificity)


def _environment_routes() -> list[_Route]:
    found = getproxies()
    routes = [
        _Route.parse(f"{scheme}://", proxy if "://" in proxy else f"http://{proxy}", _variable(scheme))
        for scheme in ("http", "https", "all")
        if (proxy := found.get(scheme))
    ]
    for entry in (entry.strip() for entry in found.get("no", "").split(",")):
        if entry == "*":
            return []
        if entry:
            routes.append(_Route.parse(_no_proxy_pattern(entry), None, _variable("no")))
    return routes


def _variable(key: str) -> str:
    """The variable `getproxies` read `key` from: the lower-case one wins, as it does there."""
    name = f"{key}_proxy"
    return name if name in os.environ else name.upper()


def _no_proxy_pattern(entry: str) -> str:
    if "://" in entry:
        return entry
    if _is_address(ipaddress.IPv4Address, entry):
        return f"all://{entry}"
    if _is_address(ipaddress.IPv6Address, entry):
        return f"all://[{entry}]"
    if entry.lower() == "localhost":
        return f"all://{entry}"
    return f"all://*{entry}"


def _is_address(kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], entry: str) -> bool:
    try:
        kind(entry.split("/")[0])
    except ValueError:
        return False
    return True


def _host_pattern(host: str) -> re.Pattern[str] | None:
    if not host:
        return None
    if host.startswith("*."):  # subdomains only
        return re.compile(rf"^.+\.{re.escape(host[2:])}$")
    if host.startswith("*"):  # the domain and its subdomains
        return re.compile(rf"^(.+\.)?{re.escape(host[1:])}$")
    return re.compile(rf"^{re.escape(host)}$")
