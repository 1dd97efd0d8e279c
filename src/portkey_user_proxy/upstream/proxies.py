"""The proxy the environment names for PORTKEY_URL, chosen as httpx chooses it for any client.

HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (read through urllib's `getproxies`, as httpx reads them) route
by scheme; NO_PROXY entries take hosts off the proxy: `*` every host, `example.com` the domain and
its subdomains, `.example.com` the subdomains only, an address or `localhost` itself, and
`http://host:port` that exact origin. Of the routes that match, the most specific wins: one with a
port, then the longest host, then a named scheme. Every request goes to the same origin, so the
choice is made once, at start-up.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.request import getproxies

import httpx


@dataclass(frozen=True, slots=True)
class _Route:
    scheme: str  # "" for every scheme
    host: str  # "" for every host
    host_pattern: re.Pattern[str] | None
    port: int | None
    proxy: str | None  # None: straight to the origin

    @classmethod
    def parse(cls, pattern: str, proxy: str | None) -> _Route:
        url = httpx.URL(pattern)
        host = "" if url.host == "*" else url.host
        return cls("" if url.scheme == "all" else url.scheme, host, _host_pattern(host), url.port, proxy)

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
    matching = [route for route in _environment_routes() if route.matches(url)]
    if not matching:
        return None
    return min(matching, key=lambda route: route.specificity).proxy


def _environment_routes() -> list[_Route]:
    found = getproxies()
    routes = [
        _Route.parse(f"{scheme}://", proxy if "://" in proxy else f"http://{proxy}")
        for scheme in ("http", "https", "all")
        if (proxy := found.get(scheme))
    ]
    for entry in (entry.strip() for entry in found.get("no", "").split(",")):
        if entry == "*":
            return []
        if entry:
            routes.append(_Route.parse(_no_proxy_pattern(entry), None))
    return routes


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
