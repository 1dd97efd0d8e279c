"""`x-request-id`: kept when the client sends one, made up when it does not, returned either way."""

from __future__ import annotations

import httpx

from tests.conftest import MakeProxy, RunningProxy
from tests.servers import Upstream, unused_port


def test_a_client_request_id_reaches_the_upstream_and_comes_back(proxy: RunningProxy, upstream: Upstream) -> None:
    response = httpx.get(proxy.url + "/v1/models", headers={"x-request-id": "req-42"})

    assert upstream.last.headers["x-request-id"] == "req-42"
    assert response.headers.get_list("x-request-id") == ["req-42"]


def test_a_missing_request_id_is_generated_once_for_both_sides(proxy: RunningProxy, upstream: Upstream) -> None:
    first = httpx.get(proxy.url + "/v1/models")
    first_sent = upstream.last.headers["x-request-id"]
    second = httpx.get(proxy.url + "/v1/models")

    assert first.headers["x-request-id"] == first_sent
    assert len(first_sent) >= 16
    assert second.headers["x-request-id"] != first_sent


def test_proxy_made_errors_carry_the_request_id(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(portkey_url=f"http://127.0.0.1:{unused_port()}")

    response = httpx.get(proxy.url + "/v1/models", headers={"x-request-id": "req-err"})

    assert response.status_code == 502
    assert response.headers["x-request-id"] == "req-err"
