"""MongoDB failing: requests still flow (delayed at most by the lookup timeout), and each failure says why.

Down at start, down mid-run, slow; readiness, reasons in /metrics and warnings for each kind of failure;
fail-closed refusals. Tests that stop or slow MongoDB on purpose run on the stand-in only.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mongo import StandInMongo, needs_stand_in
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"
NEW_USERS = [f"{0x7A0000000000000000000000 + n:024x}" for n in range(10)]


def chat(proxy: RunningProxy, user: object = USER_ID, **headers: str) -> httpx.Response:
    body = {"messages": []} if user is None else {"user": user, "messages": []}
    return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def counts(proxy: RunningProxy, metric: str) -> dict[tuple[str, ...], float]:
    text = httpx.get(proxy.url + "/metrics").text
    return {
        tuple(sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    }


@needs_stand_in()
def test_mongodb_refusing_reads_is_told_apart_from_unreachable(
    make_proxy: MakeProxy, upstream: Upstream, mongo: StandInMongo, caplog: pytest.LogCaptureFixture
) -> None:
    mongo.refuse_reads = True  # MongoDB answers `ping` but refuses to read `users` (code 13)
    proxy = make_proxy()

    readyz = httpx.get(proxy.url + "/readyz")
    assert chat(proxy).status_code == 200

    assert readyz.status_code == 503
    assert readyz.json() == {"status": "not ready", "mongodb": "unauthorized"}
    assert upstream.last.metadata["_user"] == USER_ID  # fail-open still splits cost per user
    assert counts(proxy, "portkey_user_proxy_mongodb_up")[()] == 0
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(f"MongoDB at 127.0.0.1:{mongo.uri.split(':')[2].split('/')[0]}/LibreChat" in w for w in warnings)
    assert any("unauthorized" in w and "MONGO_URI needs a user" in w for w in warnings)


@needs_stand_in()
def test_wrong_credentials_are_unauthorized_and_never_shown(
    make_proxy: MakeProxy, mongo: StandInMongo, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = mongo.uri.replace("mongodb://", "mongodb://reader:mongo-secret@")
    proxy = make_proxy(mongo_uri=uri, unresolved_user_policy="fail-closed")

    refused = chat(proxy)
    readyz = httpx.get(proxy.url + "/readyz")

    assert readyz.json()["mongodb"] == "unauthorized"
    assert refused.status_code == 503
    assert counts(proxy, "portkey_user_proxy_attributions_total") == {("rejected", "unauthorized"): 1}
    shown = caplog.text + capsys.readouterr().err + readyz.text + refused.text
    assert "AuthenticationFailed" in caplog.text
    assert "mongo-secret" not in shown
    assert "reader" not in shown


@needs_stand_in()
def test_an_outage_costs_one_lookup_timeout_then_nothing_per_request(make_proxy: MakeProxy, upstream: Upstream) -> None:
    timeout = 5.0
    proxy = make_proxy(mongo_uri=f"mongodb://127.0.0.1:{unused_port()}/LibreChat", user_lookup_timeout_seconds=timeout)
    assert chat(proxy).status_code == 200  # the first lookup meets the outage

    for user in NEW_USERS:
        started = time.perf_counter()
        assert chat(proxy, user).status_code == 200
        assert time.perf_counter() - started < timeout  # not asked: no lookup timeout to wait
        assert upstream.last.metadata["_user"] == user

    lookups = counts(proxy, "portkey_user_proxy_user_lookups_total")
    assert lookups == {("unreachable",): 1, ("backoff",): len(NEW_USERS)}
    attributions = counts(proxy, "portkey_user_proxy_attributions_total")
    assert attributions == {("fallback", "unreachable"): 1, ("fallback", "backoff"): len(NEW_USERS)}
    # /readyz asks MongoDB itself and may wait the whole lookup timeout: the client waits longer.
    readiness = httpx.get(proxy.url + "/readyz", timeout=timeout * 3)
    assert readiness.json() == {"status": "not ready", "mongodb": "unreachable"}


@needs_stand_in()
def test_recovery_closes_the_window(
    make_proxy: MakeProxy, upstream: Upstream, librechat_user: dict[str, object]
) -> None:
    port = unused_port()
    proxy = make_proxy(mongo_uri=f"mongodb://127.0.0.1:{port}/LibreChat", user_lookup_timeout_seconds=2)
    chat(proxy)
    mongo = StandInMongo(port).start()
    try:
        mongo.add_user(librechat_user)
        # The readiness probe reaches MongoDB again: lookups resume at once, without waiting for the window.
        assert httpx.get(proxy.url + "/readyz").status_code == 200
        assert chat(proxy).status_code == 200
    finally:
        mongo.stop()

    assert upstream.last.metadata["_user"] == "timmanik@email.com"
    assert counts(proxy, "portkey_user_proxy_mongodb_up")[()] == 1


@needs_stand_in()
def test_every_reason_is_counted_in_metrics(proxy: RunningProxy, upstream: Upstream) -> None:
    chat(proxy)  # found
    chat(proxy)  # cache_hit
    chat(proxy, "ffffffffffffffffffffffff")  # not_found
    chat(proxy, "alice")  # not_an_object_id
    chat(proxy, None)  # no_identity
    chat(proxy, None, **{"x-librechat-user-id": "{{LIBRECHAT_USER_ID}}"})  # placeholder

    attributions = counts(proxy, "portkey_user_proxy_attributions_total")

    assert attributions == {
        ("resolved", "found"): 1,
        ("resolved", "cache_hit"): 1,
        ("fallback", "not_found"): 1,
        ("fallback", "not_an_object_id"): 1,
        ("fallback", "no_identity"): 1,
        ("fallback", "placeholder"): 1,
    }


@needs_stand_in()
def test_fail_closed_refusals_log_the_refused_id(make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    proxy = make_proxy(unresolved_user_policy="fail-closed")

    assert chat(proxy, "ffffffffffffffffffffffff").status_code == 403
    assert chat(proxy, "evil\nFAKE LINE").status_code == 403

    assert "refused the user id 'ffffffffffffffffffffffff' (not_found)" in caplog.text
    assert "refused the user id 'evil\\nFAKE LINE' (not_an_object_id)" in caplog.text


@needs_stand_in()
def test_fail_closed_refusals_never_log_a_credential_sent_as_the_user_id(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = make_proxy(unresolved_user_policy="fail-closed")

    assert chat(proxy, None, **{"x-librechat-user-id": "Bearer sk-live-0123456789abcdef"}).status_code == 403
    assert chat(proxy, "sk-proj-0123456789abcdef").status_code == 403

    assert caplog.text.count("refused the user id (a value shaped like a credential, hidden) (not_an_object_id)") == 2
    assert "0123456789abcdef" not in caplog.text


@needs_stand_in()
def test_groups_that_cannot_be_read_show_in_metrics_while_users_are_resolved(
    make_proxy: MakeProxy, upstream: Upstream, own_mongo: StandInMongo
) -> None:
    proxy = make_proxy(mongo_uri=own_mongo.uri, team_metadata_key="team")
    assert counts(proxy, "portkey_user_proxy_teams_readable")[()] == 1
    own_mongo.refused_collections.add("groups")

    assert chat(proxy).status_code == 200

    assert upstream.last.metadata == {"_user": "timmanik@email.com"}  # resolved, without a team
    assert counts(proxy, "portkey_user_proxy_teams_readable")[()] == 0
    assert counts(proxy, "portkey_user_proxy_mongodb_up")[()] == 1  # `users` answers: MongoDB itself is up


# --- Down, slow, back: requests keep flowing ---------------------------------------------------


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


def test_groups_are_unreadable_while_the_mongodb_that_holds_them_is_down(
    make_proxy: MakeProxy, upstream: Upstream, librechat_user: dict[str, object]
) -> None:
    port = unused_port()
    proxy = make_proxy(mongo_uri=f"mongodb://127.0.0.1:{port}/LibreChat", team_metadata_key="team")

    assert chat(proxy).status_code == 200
    assert counts(proxy, "portkey_user_proxy_mongodb_up")[()] == 0
    assert counts(proxy, "portkey_user_proxy_teams_readable")[()] == 0  # LibreChat's groups are on it too

    mongo = StandInMongo(port).start()
    try:
        mongo.add_user(librechat_user)
        assert httpx.get(proxy.url + "/readyz").status_code == 200  # MongoDB answers again
        assert counts(proxy, "portkey_user_proxy_teams_readable")[()] == 1
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
