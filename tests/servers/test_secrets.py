"""Keys, Authorization values, USER_HASH_SECRET and MONGO_URI credentials never reach logs, errors or metrics."""

from __future__ import annotations

import logging

import httpx
import pytest

from portkey_user_proxy.observability.logs import QUIET_LIBRARIES, configure_logging
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream, unused_port

PROXY_KEY = "proxy-secret-0123456789"
PORTKEY_KEY = "pk-portkey-secret-0123"
HASH_SECRET = "hash-secret-0123456789"
SECRETS = (PROXY_KEY, PORTKEY_KEY, HASH_SECRET, "mongo-secret", "query-secret", "sk-provider-secret")

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_libraries_that_log_urls_and_replies_are_kept_quiet() -> None:
    configure_logging("DEBUG")

    for name in QUIET_LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("portkey_user_proxy.access").isEnabledFor(logging.INFO)


def test_no_secret_is_ever_shown(
    # Captured first: the capture must outlive the servers, which log as they stop.
    capsys: pytest.CaptureFixture[str],
    make_proxy: MakeProxy,
    upstream: Upstream,
) -> None:
    configure_logging("DEBUG")  # everything a process logs goes to the captured stderr
    settings = {
        "proxy_api_key": PROXY_KEY,
        "portkey_api_key": PORTKEY_KEY,
        "portkey_user_value": "email-hash",
        "user_hash_secret": HASH_SECRET,
        # Nothing listens there: every lookup fails, and the failure is logged.
        "mongo_uri": f"mongodb://reader:mongo-secret@127.0.0.1:{unused_port()}/LibreChat",
        "user_lookup_timeout_seconds": 0.3,
        "metrics_require_proxy_api_key": True,
    }
    proxy = make_proxy(portkey_url=upstream.url, **settings)
    unreachable = make_proxy(portkey_url=f"http://127.0.0.1:{unused_port()}", **settings)
    key = {"authorization": f"Bearer {PROXY_KEY}"}
    body = {"user": "6651f0c2a1b2c3d4e5f60718", "messages": []}

    responses = [
        httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=10),
        httpx.post(
            proxy.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-provider-secret"},
            timeout=10,
        ),
        httpx.post(proxy.url + "/v1/chat/completions?api-key=query-secret", json=body, headers=key, timeout=10),
        httpx.post(unreachable.url + "/v1/chat/completions", json=body, headers=key, timeout=10),
        httpx.get(proxy.url + "/metrics", timeout=10),
        httpx.get(proxy.url + "/metrics", headers=key, timeout=10),
        httpx.get(proxy.url + "/readyz", timeout=10),
    ]

    assert [response.status_code for response in responses] == [401, 401, 200, 502, 401, 200, 503]
    for running in (proxy, unreachable):
        running.server.stop()  # access lines are written as requests end; stopping waits for that
    logged = capsys.readouterr().err
    assert "attribution=fallback:unreachable" in logged  # MongoDB's failure path was taken
    assert "MongoDB at 127.0.0.1:" in logged  # the warning names the server, without the credentials
    assert '/v1/chat/completions" 502' in logged  # and the upstream's
    shown = [logged]
    shown += [response.text for response in responses]
    shown += [str(response.headers) for response in responses]
    for secret in SECRETS:
        for text in shown:
            assert secret not in text
    assert upstream.last.headers["x-portkey-api-key"] == PORTKEY_KEY  # held, sent, and only there
