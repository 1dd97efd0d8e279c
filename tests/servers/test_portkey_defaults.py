"""Portkey key custody: the proxy's Portkey key and routing default fill in what a request lacks."""

from __future__ import annotations

import httpx
import pytest

from portkey_user_proxy.app import portkey_defaults
from portkey_user_proxy.settings import SettingsError, load_settings
from portkey_user_proxy.upstream.portkey_defaults import PortkeyDefaults
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

PORTKEY_KEY = "pk-held-by-the-proxy"
PROXY_KEY = "proxy-key-0123456789abcdef"
USER_ID = "6651f0c2a1b2c3d4e5f60718"
HELD = PortkeyDefaults(api_key=PORTKEY_KEY, routing=(b"x-portkey-virtual-key", "vk-default"))


def test_a_request_without_portkey_headers_gets_the_key_and_the_routing() -> None:
    outgoing = HELD.apply([(b"content-type", b"application/json")])

    assert outgoing == [
        (b"content-type", b"application/json"),
        (b"x-portkey-api-key", PORTKEY_KEY.encode()),
        (b"x-portkey-virtual-key", b"vk-default"),
    ]


def test_a_requests_own_values_win() -> None:
    own = [(b"x-portkey-api-key", b"pk-own"), (b"x-portkey-virtual-key", b"vk-own")]

    assert HELD.apply(list(own)) == own


@pytest.mark.parametrize("routing", [b"x-portkey-virtual-key", b"x-portkey-provider", b"x-portkey-config"])
def test_any_routing_header_of_the_request_keeps_the_default_out(routing: bytes) -> None:
    outgoing = HELD.apply([(routing, b"own-route")])

    assert outgoing == [(routing, b"own-route"), (b"x-portkey-api-key", PORTKEY_KEY.encode())]


@pytest.mark.parametrize("value", [b"", b"  ", b"${PORTKEY_API_KEY}", b"${ PORTKEY_API_KEY }"])
def test_blank_or_unresolved_values_are_replaced(value: bytes) -> None:
    # LibreChat sends `${VAR}` literally when VAR is missing from its own environment.
    outgoing = HELD.apply([(b"x-portkey-api-key", value), (b"x-portkey-virtual-key", value)])

    assert outgoing == [(b"x-portkey-api-key", PORTKEY_KEY.encode()), (b"x-portkey-virtual-key", b"vk-default")]


def test_nothing_configured_means_nothing_to_do() -> None:
    assert portkey_defaults(load_settings(_env_file=None)) is None


@pytest.mark.parametrize(
    ("setting", "header"),
    [
        ("portkey_virtual_key", b"x-portkey-virtual-key"),
        ("portkey_provider", b"x-portkey-provider"),
        ("portkey_config", b"x-portkey-config"),
    ],
)
def test_each_routing_default_goes_out_under_its_header(setting: str, header: bytes) -> None:
    defaults = portkey_defaults(load_settings(_env_file=None, **{setting: " route-1 "}))

    assert defaults is not None
    assert defaults.apply([]) == [(header, b"route-1")]


def test_only_one_routing_default_may_be_set() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, portkey_virtual_key="vk", portkey_provider="@openai")

    assert "set only one of PORTKEY_VIRTUAL_KEY, PORTKEY_PROVIDER and PORTKEY_CONFIG" in str(refused.value)


@pytest.mark.parametrize(
    ("chosen", "blamed"),
    [
        ({"portkey_virtual_key": "vk", "portkey_provider": "@openai"}, "PORTKEY_PROVIDER: PORTKEY_VIRTUAL_KEY is set"),
        ({"portkey_virtual_key": "vk", "portkey_config": "pc-1"}, "PORTKEY_CONFIG: PORTKEY_VIRTUAL_KEY is set"),
        ({"portkey_provider": "@openai", "portkey_config": "pc-1"}, "PORTKEY_CONFIG: PORTKEY_PROVIDER is set"),
    ],
)
def test_two_routing_defaults_are_named_as_set(chosen: dict[str, str], blamed: str) -> None:
    # The admin unsets one of the two they set: the line names those two, never the third.
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, **chosen)

    assert f"invalid setting {blamed} too" in str(refused.value)
    unset = {"PORTKEY_VIRTUAL_KEY", "PORTKEY_PROVIDER", "PORTKEY_CONFIG"} - {name.upper() for name in chosen}
    assert f"invalid setting {unset.pop()}" not in str(refused.value)


def test_header_breaking_values_are_refused() -> None:
    with pytest.raises(SettingsError, match="PORTKEY_CONFIG: must be printable ASCII"):
        load_settings(_env_file=None, portkey_config="pc-1\r\nx-injected: 1")
    with pytest.raises(SettingsError, match="PORTKEY_API_KEY: must be printable ASCII without spaces"):
        load_settings(_env_file=None, portkey_api_key="pk with space")


def test_librechat_needs_no_portkey_secret(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(proxy_api_key=PROXY_KEY, portkey_api_key=PORTKEY_KEY, portkey_provider="@openai-prod")

    response = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"user": USER_ID, "messages": []},
        headers={"authorization": f"Bearer {PROXY_KEY}"},  # all LibreChat's apiKey holds now
        timeout=10,
    )

    assert response.status_code == 200
    sent = upstream.last.headers
    assert sent["x-portkey-api-key"] == PORTKEY_KEY
    assert sent["x-portkey-provider"] == "@openai-prod"
    assert "authorization" not in sent
    assert [name for name, _ in upstream.last.header_list].count("x-portkey-api-key") == 1


# --- Routing on the proxy's key -------------------------------------------------------------------

INLINE_CONFIG = b'{"provider": "openai", "custom_host": "https://attacker.example/v1"}'
ROUTED_ELSEWHERE = [
    [(b"x-portkey-custom-host", b"https://attacker.example/v1")],
    [(b"x-portkey-config", INLINE_CONFIG)],
    [(b"x-portkey-config", b'  {"strategy": {"mode": "fallback"}}')],
    [(b"x-portkey-config", b'"pc-quoted"')],
]


@pytest.mark.parametrize("headers", ROUTED_ELSEWHERE)
def test_clients_cannot_route_the_proxys_key_elsewhere(headers: list[tuple[bytes, bytes]]) -> None:
    outgoing = HELD.apply([(b"content-type", b"application/json"), *headers])

    assert outgoing == [
        (b"content-type", b"application/json"),
        (b"x-portkey-api-key", PORTKEY_KEY.encode()),
        (b"x-portkey-virtual-key", b"vk-default"),  # the request named no route the proxy keeps: the default
    ]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-portkey-config", b"pc-librechat-a1b2c3")],
        [(b"x-portkey-virtual-key", b"vk-own")],
        [(b"x-portkey-provider", b"@openai-prod")],
    ],
)
def test_saved_configs_virtual_keys_and_provider_slugs_keep_working(headers: list[tuple[bytes, bytes]]) -> None:
    assert HELD.apply(list(headers)) == [*headers, (b"x-portkey-api-key", PORTKEY_KEY.encode())]


@pytest.mark.parametrize("headers", ROUTED_ELSEWHERE)
def test_client_routing_can_be_allowed(headers: list[tuple[bytes, bytes]]) -> None:
    defaults = portkey_defaults(
        load_settings(_env_file=None, portkey_api_key=PORTKEY_KEY, allow_client_portkey_routing=True)
    )
    assert defaults is not None

    assert defaults.apply(list(headers)) == [*headers, (b"x-portkey-api-key", PORTKEY_KEY.encode())]


def test_without_the_proxys_key_client_routing_is_the_clients_own() -> None:
    defaults = portkey_defaults(load_settings(_env_file=None, portkey_virtual_key="vk-default"))
    assert defaults is not None

    assert defaults.apply([(b"x-portkey-config", INLINE_CONFIG)]) == [(b"x-portkey-config", INLINE_CONFIG)]


def test_a_custom_host_never_reaches_portkey_on_the_proxys_key(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(portkey_api_key=PORTKEY_KEY)
    headers = {"x-portkey-custom-host": "https://attacker.example/v1", "x-portkey-config": INLINE_CONFIG.decode()}

    response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID}, headers=headers, timeout=10)

    assert response.status_code == 200
    sent = upstream.last.headers
    assert "x-portkey-custom-host" not in sent
    assert "x-portkey-config" not in sent
    assert sent["x-portkey-api-key"] == PORTKEY_KEY


@pytest.mark.parametrize("value", ["", "${PORTKEY_API_KEY}"])
def test_an_empty_key_with_no_portkey_api_key_set_is_forwarded_and_named_in_a_warning(
    make_proxy: MakeProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    proxy = make_proxy()
    body = {"model": "gpt-4o", "messages": [], "user": "6651f0c2a1b2c3d4e5f60718"}

    httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={"x-portkey-api-key": value}, timeout=10)

    assert upstream.last.headers["x-portkey-api-key"] == value  # as it came: the proxy has no key to put there
    assert any(
        "empty x-portkey-api-key" in r.getMessage() and "PORTKEY_API_KEY" in r.getMessage() for r in caplog.records
    )
