"""A bug met while handling one request: the client gets the proxy's JSON error, the server stays up.

The bug is planted by replacing one step of the real proxy with a failing one; everything else
(uvicorn, the upstream on loopback, MongoDB over TCP) is real.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portkey_user_proxy import forwarder
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"
SECRET = "the-value-in-the-exception"


class PlantedBug(Exception):
    pass


def _fail(*_: Any, **__: Any) -> None:
    raise PlantedBug(SECRET)


def _metric(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == f"portkey_user_proxy_{name}" and sample.labels == labels:
                return sample.value
    return 0.0


def test_a_bug_before_the_response_is_the_proxys_json_500_counted_and_logged_without_values(
    make_proxy: MakeProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    proxy = make_proxy()
    monkeypatch.setattr(proxy.app.forwarder, "_note_attribution", _fail)

    response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID, "messages": []})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"]
    assert upstream.received == [], "a request the proxy failed on is never sent"
    exposition = httpx.get(proxy.url + "/metrics").text
    assert _metric(exposition, "errors_total", route="chat_completions", code="internal_error") == 1
    assert _metric(exposition, "requests_total", route="chat_completions", status="500") == 1
    monkeypatch.undo()
    assert httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID}).status_code == 200
    proxy.server.stop()  # access lines are written when requests end; stopping waits for that

    messages = [record.getMessage() for record in caplog.records]
    assert any("internal error" in m and "PlantedBug" in m for m in messages)
    assert any(m.startswith('"POST /v1/chat/completions" 500 ') for m in messages)
    assert not any(SECRET in m for m in messages)
    assert not any(record.exc_info for record in caplog.records), "no traceback: its frames hold request values"


class _FailingMeter:
    def __init__(self, *args: object) -> None:
        pass

    def feed(self, chunk: bytes) -> None:
        raise PlantedBug(SECRET)

    def reading(self) -> None:
        return None


def test_a_bug_mid_response_cuts_the_response_short_and_the_next_request_is_served(
    make_proxy: MakeProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    proxy = make_proxy(metrics_per_user_tokens=True)
    monkeypatch.setattr(forwarder, "AnswerMeter", _FailingMeter)
    body = {"user": USER_ID, "messages": [], "stream": True}

    with pytest.raises(httpx.RemoteProtocolError):  # a truncated stream is never taken for a whole one
        httpx.post(proxy.url + "/v1/chat/completions", json=body)

    exposition = httpx.get(proxy.url + "/metrics").text
    assert _metric(exposition, "errors_total", route="chat_completions", code="internal_error") == 1
    monkeypatch.undo()
    assert httpx.post(proxy.url + "/v1/chat/completions", json=body).status_code == 200
    proxy.server.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert any("internal error" in m and "PlantedBug" in m for m in messages)
    assert not any(SECRET in m for m in messages)
    assert not any(record.exc_info for record in caplog.records)
