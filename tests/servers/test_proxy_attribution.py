"""End to end: LibreChat's requests reach the upstream attributed to the user's email."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.fixtures import load_fixture
from tests.support.proxy import RunningProxy
from tests.support.servers import Upstream

EMAIL = "timmanik@email.com"
USER_ID = "6651f0c2a1b2c3d4e5f60718"


def send_fixture(proxy: RunningProxy, name: str, **changes: Any) -> httpx.Response:
    request = load_fixture(name)
    headers = {**request["headers"], **changes.get("headers", {})}
    body = {**request["body"], **changes.get("body", {})}
    return httpx.post(proxy.url + request["path"], headers=headers, json=body, timeout=10)


def test_librechat_chat_request_is_attributed_to_the_users_email(proxy: RunningProxy, upstream: Upstream) -> None:
    response = send_fixture(proxy, "librechat_chat_request.json")

    assert response.status_code == 200
    assert upstream.last.path == "/v1/chat/completions"
    assert upstream.last.metadata == {"_environment": "production", "_user": EMAIL}


def test_portkey_and_authorization_headers_pass_unchanged(proxy: RunningProxy, upstream: Upstream) -> None:
    send_fixture(proxy, "librechat_chat_request.json")

    sent = load_fixture("librechat_chat_request.json")["headers"]
    for name in ("authorization", "x-portkey-api-key", "x-portkey-virtual-key", "user-agent", "x-stainless-os"):
        assert upstream.last.headers[name] == sent[name]


def test_unresolved_placeholders_are_filled_from_the_user_record(proxy: RunningProxy, upstream: Upstream) -> None:
    response = send_fixture(proxy, "librechat_placeholder_leak.json")

    assert response.status_code == 200
    assert upstream.last.metadata == {"_user": EMAIL, "team": "USER"}


def test_a_spoofed_user_in_the_metadata_is_overridden(proxy: RunningProxy, upstream: Upstream) -> None:
    send_fixture(proxy, "librechat_chat_request.json", headers={"x-portkey-metadata": '{"_user": "ceo@corp.com"}'})

    assert upstream.last.metadata["_user"] == EMAIL


def test_the_identity_header_wins_and_is_not_forwarded(
    proxy: RunningProxy, upstream: Upstream, mongo: Any, librechat_user: dict[str, Any]
) -> None:
    other = {**librechat_user, "_id": type(librechat_user["_id"])("0123456789abcdef01234567"), "email": "o@x.io"}
    mongo.add_user(other)

    send_fixture(proxy, "librechat_chat_request.json", headers={"x-librechat-user-id": "0123456789abcdef01234567"})

    assert upstream.last.metadata["_user"] == "o@x.io"
    assert "x-librechat-user-id" not in upstream.last.headers


def test_an_unresolved_identity_header_falls_back_to_the_body_user(proxy: RunningProxy, upstream: Upstream) -> None:
    send_fixture(proxy, "librechat_chat_request.json", headers={"x-librechat-user-id": "{{LIBRECHAT_USER_ID}}"})

    assert upstream.last.metadata["_user"] == EMAIL
    assert "x-librechat-user-id" not in upstream.last.headers


def test_unknown_user_fails_open_with_the_raw_id(proxy: RunningProxy, upstream: Upstream) -> None:
    response = send_fixture(proxy, "librechat_chat_request.json", body={"user": "ffffffffffffffffffffffff"})

    assert response.status_code == 200
    assert upstream.last.metadata["_user"] == "ffffffffffffffffffffffff"


def test_a_non_object_id_user_is_never_queried(proxy: RunningProxy, upstream: Upstream) -> None:
    response = send_fixture(proxy, "librechat_chat_request.json", body={"user": "not-an-id"})

    assert response.status_code == 200
    assert upstream.last.metadata["_user"] == "unidentified"
    assert proxy.queries.finds == 0


def test_a_raw_email_never_passes_for_a_resolved_user(proxy: RunningProxy, upstream: Upstream) -> None:
    # Portkey copies a body `user` into `_user` when the header has none: the proxy always sets it.
    response = send_fixture(proxy, "librechat_chat_request.json", body={"user": "ceo@corp.example"})

    assert response.status_code == 200
    assert upstream.last.metadata["_user"] == "unidentified"


def test_a_body_naming_nobody_is_sent_as_unidentified(proxy: RunningProxy, upstream: Upstream) -> None:
    response = httpx.post(proxy.url + "/v1/embeddings", json={"input": "x", "user": 42}, timeout=10)

    assert response.status_code == 200
    assert upstream.last.metadata == {"_user": "unidentified"}


def test_a_bodiless_request_naming_nobody_is_left_as_it_came(proxy: RunningProxy, upstream: Upstream) -> None:
    assert httpx.get(proxy.url + "/v1/models", timeout=10).status_code == 200

    assert "x-portkey-metadata" not in upstream.last.headers
