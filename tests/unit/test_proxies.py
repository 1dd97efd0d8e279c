"""The environment's proxy for PORTKEY_URL is the one httpx itself would choose, NO_PROXY included.

httpx's own choice is read through its internals here, in the test alone: the product uses public API,
and this test fails loudly if the two ever part.
"""

from __future__ import annotations

import importlib.util

import httpx
import pytest
from httpx._utils import URLPattern, get_environment_proxies

from portkey_user_proxy.upstream.proxies import ProxySettingError, check_environment_proxy, environment_proxy

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


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HTTPS_PROXY", "ftp://user:proxy-secret@proxy.internal:21", "must be an http://, https:// or socks5://"),
        ("HTTPS_PROXY", "http://user:proxy-secret@proxy.internal:99999", "must have a port from 1 to 65535"),
        ("https_proxy", "http://user:proxy-secret@[::1", "is not a valid URL"),
        ("ALL_PROXY", "http://user:proxy-secret@proxy.internal:0", "must have a port from 1 to 65535"),
    ],
)
def test_a_proxy_httpx_cannot_use_is_refused_naming_its_variable(
    no_proxies: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    no_proxies.setenv(variable, value)

    with pytest.raises(ProxySettingError) as raised:
        check_environment_proxy(httpx.URL("https://api.portkey.ai"))

    assert raised.value.variable == variable
    assert problem in raised.value.problem
    assert "proxy-secret" not in str(raised.value)


@pytest.mark.skipif(importlib.util.find_spec("socksio") is not None, reason="httpx[socks] is installed here")
@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_socks_proxy_without_its_package_is_refused_saying_what_is_missing(
    no_proxies: pytest.MonkeyPatch, scheme: str
) -> None:
    no_proxies.setenv("ALL_PROXY", f"{scheme}://127.0.0.1:1080")

    with pytest.raises(ProxySettingError) as raised:
        check_environment_proxy(httpx.URL("https://api.portkey.ai"))

    assert raised.value.variable == "ALL_PROXY"
    assert "httpx[socks]" in raised.value.problem


def test_a_no_proxy_entry_httpx_cannot_read_is_refused(no_proxies: pytest.MonkeyPatch) -> None:
    no_proxies.setenv("NO_PROXY", "corp.example,[::1")

    with pytest.raises(ProxySettingError) as raised:
        check_environment_proxy(httpx.URL("https://api.portkey.ai"))

    assert raised.value.variable == "NO_PROXY"


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"HTTPS_PROXY": PROXY},
        {"HTTPS_PROXY": "proxy.internal:3128"},
        {"HTTPS_PROXY": "https://proxy.internal"},
        # Only the proxy PORTKEY_URL goes through is used, so only it is checked.
        {"HTTP_PROXY": "ftp://proxy.internal:21"},
        {"ALL_PROXY": "socks5://127.0.0.1:1080", "NO_PROXY": "api.portkey.ai"},
    ],
)
def test_a_usable_proxy_or_none_passes(no_proxies: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    for name, value in environment.items():
        no_proxies.setenv(name, value)

    check_environment_proxy(httpx.URL("https://api.portkey.ai"))
