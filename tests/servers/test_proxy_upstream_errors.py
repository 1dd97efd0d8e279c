"""Upstream errors pass through unchanged; failures the proxy meets become OpenAI-style errors."""

from __future__ import annotations

import httpx
import pytest

from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, unused_port


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_upstream_errors_pass_through_unchanged(proxy: RunningProxy, upstream: Upstream, status: int) -> None:
    response = httpx.post(proxy.url + f"/status/{status}", json={"user": "6651f0c2a1b2c3d4e5f60718"})

    assert response.status_code == status
    assert response.json()["error"]["message"] == f"upstream said {status}"


def test_an_unreachable_upstream_is_a_502(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(portkey_url=f"http://127.0.0.1:{unused_port()}")

    response = httpx.post(proxy.url + "/v1/chat/completions", json={"messages": []})

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert "PORTKEY_URL" in error["message"]


def test_no_response_headers_within_the_read_timeout_is_a_504(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(upstream_read_timeout_seconds=0.3)

    response = httpx.get(proxy.url + "/never-answers", timeout=10)

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_errors_never_echo_credentials(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(portkey_url=f"http://127.0.0.1:{unused_port()}")

    response = httpx.get(
        proxy.url + "/v1/models", headers={"authorization": "Bearer sk-secret-1", "x-portkey-api-key": "pk-secret-2"}
    )

    assert "secret" not in response.text
