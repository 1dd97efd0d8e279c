"""One access line per request: who, what, how it went; never keys, Authorization values or bodies."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.support.proxy import RunningProxy
from tests.support.servers import Upstream

SECRETS = ("sk-authorization-secret", "pk-portkey-secret", "the-body-secret")


def test_the_access_line_names_the_user_and_trace_but_no_secret(
    proxy: RunningProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"authorization": f"Bearer {SECRETS[0]}", "x-portkey-api-key": SECRETS[1]}
    body = {"user": "6651f0c2a1b2c3d4e5f60718", "messages": [{"role": "user", "content": SECRETS[2]}]}

    httpx.post(proxy.url + "/v1/chat/completions?key=q", headers=headers, json=body)
    proxy.server.stop()  # the line is written when the request ends; stopping waits for that

    access = [r.getMessage() for r in caplog.records if r.name == "portkey_user_proxy.access"]
    assert len(access) == 1
    line = access[0]
    assert line.startswith('"POST /v1/chat/completions" 200 ')
    assert "user=timmanik@email.com" in line
    assert "attribution=resolved:found" in line
    assert "trace=trace-123" in line
    assert "key=q" not in line  # queries can carry keys: only the path is logged
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage()


def test_an_unresolved_placeholder_is_reported_once_not_per_request(
    proxy: RunningProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    headers = {"x-librechat-user-id": "{{LIBRECHAT_USER_ID}}"}

    for _ in range(3):
        httpx.post(proxy.url + "/v1/chat/completions", headers=headers, json={"user": "6651f0c2a1b2c3d4e5f60718"})
    proxy.server.stop()

    warnings = [r.getMessage() for r in caplog.records if "{{LIBRECHAT_USER_ID}}" in r.getMessage()]
    assert len(warnings) == 1
    assert "LibreChat configuration or version problem" in warnings[0]


def test_users_not_found_under_fail_open_are_warned_about_once_a_minute(
    proxy: RunningProxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Forwarded anyway, so nothing else shows it: most often MONGO_URI names another database.
    caplog.set_level(logging.WARNING)
    unknown = ["aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccc"]

    for user in unknown:
        response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": user})
        assert response.status_code == 200
    proxy.server.stop()

    warnings = [r for r in caplog.records if "not in the users collection" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "the user id aaaaaaaaaaaaaaaaaaaaaaaa is not in the users collection at 127.0.0.1:" in message
    assert "UNRESOLVED_USER_POLICY=fail-open" in message
    assert "MONGO_URI most likely names another database than LibreChat's" in message
