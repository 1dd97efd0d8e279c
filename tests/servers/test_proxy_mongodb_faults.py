"""MongoDB down at start, down mid-run, or slow: requests still flow, delayed at most by the timeout."""

from __future__ import annotations

import threading

import httpx

from tests.support.mongo import StandInMongo, needs_stand_in
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"


def chat(proxy: RunningProxy, user: str = USER_ID) -> httpx.Response:
    return httpx.post(proxy.url + "/v1/chat/completions", json={"user": user, "messages": []}, timeout=10)


def test_the_proxy_serves_while_mongodb_is_down_and_recovers_when_it_returns(
    make_proxy: MakeProxy, upstream: Upstream, librechat_user: dict[str, object]
) -> None:
    port = unused_port()
    proxy = make_proxy(mongo_uri=f"mongodb://127.0.0.1:{port}/LibreChat", user_lookup_timeout_seconds=2)

    assert chat(proxy).status_code == 200
    assert upstream.last.metadata["_user"] == USER_ID  # fail-open: the raw id still splits cost per user
    assert httpx.get(proxy.url + "/healthz").status_code == 200
    assert httpx.get(proxy.url + "/readyz").status_code == 503

    mongo = StandInMongo(port).start()
    try:
        mongo.add_user(librechat_user)
        # Readiness reads `users` whatever the outage window says, and an answer closes the window.
        assert httpx.get(proxy.url + "/readyz").json() == {"status": "ready", "mongodb": "reachable"}
        assert chat(proxy).status_code == 200
        assert upstream.last.metadata["_user"] == EMAIL
    finally:
        mongo.stop()


@needs_stand_in()
def test_a_cached_user_stays_attributed_when_mongodb_goes_down(
    make_proxy: MakeProxy, upstream: Upstream, own_mongo: StandInMongo
) -> None:
    # A tiny TTL makes every request ask MongoDB again, so the outage is met on the request path.
    proxy = make_proxy(mongo_uri=own_mongo.uri, user_cache_ttl_seconds=0.001, user_lookup_timeout_seconds=0.5)
    chat(proxy)
    own_mongo.stop()

    assert chat(proxy).status_code == 200
    assert upstream.last.metadata["_user"] == EMAIL


@needs_stand_in()
def test_a_slow_mongodb_delays_a_request_by_the_lookup_timeout_only(
    make_proxy: MakeProxy, upstream: Upstream, own_mongo: StandInMongo
) -> None:
    own_mongo.gate = threading.Event()  # every find waits until the test ends
    proxy = make_proxy(mongo_uri=own_mongo.uri, user_lookup_timeout_seconds=0.3)
    try:
        response = chat(proxy)
    finally:
        own_mongo.gate.set()

    assert response.status_code == 200
    assert upstream.last.metadata["_user"] == USER_ID


def test_fail_closed_refuses_unknown_users_with_403(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(unresolved_user_policy="fail-closed")

    response = chat(proxy, "ffffffffffffffffffffffff")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "user_not_identified"
    assert upstream.received == []


def test_fail_closed_answers_503_when_mongodb_is_down(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(
        unresolved_user_policy="fail-closed",
        mongo_uri=f"mongodb://127.0.0.1:{unused_port()}/LibreChat",
        user_lookup_timeout_seconds=0.3,
    )

    response = chat(proxy)

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert upstream.received == []


def test_fail_closed_still_serves_known_users(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(unresolved_user_policy="fail-closed")

    assert chat(proxy).status_code == 200
    assert upstream.last.metadata["_user"] == EMAIL
