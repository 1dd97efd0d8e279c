"""The environment's proxy for PORTKEY_URL is the one httpx itself would choose, NO_PROXY included.

httpx's own choice is read through its internals here, in the test alone: the product uses public API,
and this test fails loudly if the two ever part.
"""

from __future__ import annotations

import httpx
import pytest
from httpx._utils import URLPattern, get_environment_proxies

from portkey_user_proxy.upstream.proxies import environment_proxy

PROXY = "http://proxy.internal:3128"
URLS = [
    "https://api.portkey.ai",
    "https://api.portkey.ai:8443/v1",
    "http://portkey-gateway:8787",
    "http://127.0.0.1:8787",
    "http://localhost:8787",
    "http://[::1]:8787",
    "http://gateway.corp.example",
    "http://corp.example",
    "http://notcorp.example",
]
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"HTTPS_PROXY": PROXY},
    {"HTTP_PROXY": "proxy.internal:3128"},
    {"ALL_PROXY": PROXY},
    {"ALL_PROXY": PROXY, "HTTPS_PROXY": "http://other:8080"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "*"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "corp.example"},
    {"ALL_PROXY": PROXY, "NO_PROXY": ".corp.example"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "127.0.0.1, localhost"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "::1"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "0.0.1"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "http://127.0.0.1:8787"},
    {"ALL_PROXY": PROXY, "NO_PROXY": "https://api.portkey.ai"},
    {"HTTP_PROXY": PROXY, "NO_PROXY": "portkey-gateway,api.portkey.ai"},
]


def _httpx_choice(url: httpx.URL) -> str | None:
    routes = sorted((URLPattern(key), proxy) for key, proxy in get_environment_proxies().items())
    return next((proxy for pattern, proxy in routes if pattern.matches(url)), None)


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda env: ";".join(f"{k}={v}" for k, v in env.items()))
def test_the_proxy_chosen_is_httpx_own_choice(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for url in map(httpx.URL, URLS):
        assert environment_proxy(url) == _httpx_choice(url), url


def test_no_proxy_takes_a_host_off_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "portkey-gateway")
    assert environment_proxy(httpx.URL("http://portkey-gateway:8787")) is None
    assert environment_proxy(httpx.URL("https://api.portkey.ai")) == PROXY
