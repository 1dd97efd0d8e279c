"""PROXY_API_KEY: checked first, in constant time, never forwarded; the probes stay open."""

from __future__ import annotations

import hmac

import httpx
import pytest

from portkey_user_proxy.errors import ProxyError
from portkey_user_proxy.inbound.auth import InboundKey
from portkey_user_proxy.settings import SettingsError, load_settings
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, raw_exchange

KEY = "proxy-key-0123456789abcdef"
USER_ID = "6651f0c2a1b2c3d4e5f60718"


def bearer(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(proxy: RunningProxy, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions", json={"user": USER_ID, "messages": []}, headers=headers, timeout=10
    )


# --- InboundKey -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER   {KEY}  "])
def test_the_key_is_admitted_and_authorization_is_taken_out(value: str) -> None:
    raw = [(b"content-type", b"application/json"), (b"authorization", value.encode()), (b"x-other", b"1")]

    assert InboundKey(KEY).admit(raw) == [(b"content-type", b"application/json"), (b"x-other", b"1")]


@pytest.mark.parametrize(
    "values",
    [
        [],
        [b"Bearer wrong-key-0123456789abcdef"],
        [f"Basic {KEY}".encode()],
        [KEY.encode()],
        [f"Bearer {KEY}x".encode()],
        [f"Bearer {KEY[:-1]}".encode()],
        [b"Bearer "],
        [f"Bearer {KEY}".encode(), b"Bearer other"],  # two keys: ambiguous
        [f"Bearer {KEY}".encode(), f"Bearer {KEY}".encode()],
    ],
)
def test_anything_but_the_key_once_is_refused_with_401(values: list[bytes]) -> None:
    raw = [(b"authorization", value) for value in values]

    with pytest.raises(ProxyError) as refused:
        InboundKey(KEY).admit(raw)

    error = refused.value
    assert error.status == 401
    assert error.code == "invalid_api_key"
    assert "PROXY_API_KEY" in error.message
    assert (b"www-authenticate", b'Bearer realm="portkey-user-proxy"') in error.headers
    assert KEY not in error.message  # what was sent is never echoed
    assert "wrong-key" not in error.message


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real_compare_digest = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare_digest(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)

    assert InboundKey(KEY).matches(f"Bearer {KEY}".encode())
    assert compared == [(KEY.encode(), KEY.encode())]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("short-key", "at least 16 characters"),
        ("a key with spaces in it", "printable ASCII without spaces"),
        ("ключ-ключ-ключ-ключ", "printable ASCII without spaces"),
    ],
)
def test_unusable_keys_stop_the_proxy_with_the_variable_named(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, proxy_api_key=value)

    assert f"invalid setting PROXY_API_KEY: must be {problem}" in str(refused.value)
    assert value not in str(refused.value)


def test_an_empty_key_means_no_key() -> None:
    assert load_settings(_env_file=None, proxy_api_key="").proxy_api_key is None


def test_protecting_metrics_needs_a_key() -> None:
    with pytest.raises(SettingsError, match="METRICS_REQUIRE_PROXY_API_KEY: needs PROXY_API_KEY"):
        load_settings(_env_file=None, metrics_require_proxy_api_key=True)


# --- The running proxy ----------------------------------------------------------------------------


def test_without_the_key_nothing_is_read_looked_up_or_forwarded(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(proxy_api_key=KEY)
    # The request announces a body it never sends: a proxy that read bodies first would wait forever.
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
        b'content-length: 1000\r\n\r\n{"user": "' + USER_ID.encode() + b'"'
    )
    answer = raw_exchange(proxy.server.port, request)  # the proxy closes: the body is never read

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b"www-authenticate: bearer" in head.lower()
    assert b"connection: close" in head.lower()
    assert b'"code":"invalid_api_key"' in body
    assert upstream.received == []
    assert proxy.directory.lookups == 0


def test_a_wrong_key_gets_an_openai_style_401(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(proxy_api_key=KEY)

    response = chat(proxy, bearer("wrong-key-0123456789abcdef"))

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert "PROXY_API_KEY" in error["message"]
    assert "wrong-key" not in response.text
    assert upstream.received == []


def test_with_the_key_the_request_goes_through_without_authorization(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(proxy_api_key=KEY)

    response = chat(proxy, {**bearer(), "x-portkey-api-key": "pk-from-librechat"})

    assert response.status_code == 200
    sent = upstream.last.headers
    assert "authorization" not in sent
    assert sent["x-portkey-api-key"] == "pk-from-librechat"
    assert upstream.last.metadata["_user"] == "timmanik@email.com"


def test_without_a_key_configured_authorization_passes_through(proxy: RunningProxy, upstream: Upstream) -> None:
    response = chat(proxy, bearer("sk-provider-key"))

    assert response.status_code == 200
    assert upstream.last.headers["authorization"] == "Bearer sk-provider-key"


def test_probes_stay_open_and_metrics_open_unless_asked(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(proxy_api_key=KEY)

    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(proxy.url + path, timeout=10).status_code == 200, path


def test_metrics_can_require_the_key(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(proxy_api_key=KEY, metrics_require_proxy_api_key=True)

    refused = httpx.get(proxy.url + "/metrics", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(proxy.url + "/metrics", headers=bearer("wrong-key-0123456789abcdef")).status_code == 401
    assert httpx.get(proxy.url + "/metrics", headers=bearer(), timeout=10).status_code == 200
    for path in ("/healthz", "/readyz"):
        assert httpx.get(proxy.url + path, timeout=10).status_code == 200, path


def test_metrics_listing_users_require_the_key(make_proxy: MakeProxy, upstream: Upstream) -> None:
    # Per-user token counters name users (emails by default): with a key configured, they are never open.
    proxy = make_proxy(proxy_api_key=KEY, metrics_per_user_tokens=True)
    assert chat(proxy, bearer()).status_code == 200

    refused = httpx.get(proxy.url + "/metrics", timeout=10)
    assert refused.status_code == 401
    assert "timmanik@email.com" not in refused.text
    scraped = httpx.get(proxy.url + "/metrics", headers=bearer(), timeout=10)
    assert scraped.status_code == 200
    assert "timmanik@email.com" in scraped.text
    for path in ("/healthz", "/readyz"):
        assert httpx.get(proxy.url + path, timeout=10).status_code == 200, path
