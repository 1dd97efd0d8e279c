"""End to end, per API family, streamed and not: who the request is attributed to, that the client's
bytes reach Portkey unchanged where nothing is added, and that per-user token counters count it."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.providers import (
    ANTHROPIC_TOKENS,
    EMBEDDING_TOKENS_COUNTED,
    RESPONSES_TOKENS,
    fixture,
)
from tests.support.providers import user_tokens as tokens_of
from tests.support.proxy import MakeProxy, RunningProxy

EMAIL = "timmanik@email.com"
USER_ID = "6651f0c2a1b2c3d4e5f60718"
OTHER_ID = "0123456789abcdef01234567"  # an ObjectId MongoDB does not know
PLACEHOLDER = "{{LIBRECHAT_USER_ID}}"


@dataclass(frozen=True)
class Family:
    name: str
    path: str
    body: dict[str, Any]  # a request without its user id
    identity_field: tuple[str, ...]  # where the family's body carries it
    tokens: dict[str, int]  # what one response counts, streamed or not

    def request(self, user: object, *, stream: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.body)
        target = body
        for key in self.identity_field[:-1]:
            target = target.setdefault(key, {})
        target[self.identity_field[-1]] = user
        body["stream"] = stream
        return body


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in keys}


RESPONSES = Family(
    "responses",
    "/v1/responses",
    _without(fixture("openai_responses_request.json")["body"], "user", "stream"),
    ("user",),
    RESPONSES_TOKENS,
)
SAFETY_IDENTIFIER = Family(
    "responses by safety_identifier", RESPONSES.path, RESPONSES.body, ("safety_identifier",), RESPONSES_TOKENS
)
ANTHROPIC = Family(
    "anthropic messages",
    "/v1/messages",
    _without(fixture("anthropic_messages_request.json")["body"], "metadata", "stream"),
    ("metadata", "user_id"),
    ANTHROPIC_TOKENS,
)
EMBEDDINGS = Family(
    "embeddings",
    "/v1/embeddings",
    {"model": "text-embedding-3-small", "input": "hello"},
    ("user",),
    EMBEDDING_TOKENS_COUNTED,
)
STREAMING = [RESPONSES, SAFETY_IDENTIFIER, ANTHROPIC]
FAMILIES = [*STREAMING, EMBEDDINGS]


def post(proxy: RunningProxy, path: str, body: object, **headers: str) -> tuple[httpx.Response, bytes]:
    """POST `body` as compact JSON and read the whole answer; returns the response and the bytes sent."""
    sent = json.dumps(body, separators=(",", ":")).encode()
    response = httpx.post(
        proxy.url + path, content=sent, headers={"content-type": "application/json", **headers}, timeout=10
    )
    return response, sent


def user_tokens(proxy: RunningProxy) -> dict[str, float]:
    return tokens_of(proxy.url, EMAIL)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("family", STREAMING, ids=lambda f: f.name)
def test_each_family_is_attributed_counted_and_forwarded_byte_for_byte(
    make_proxy: MakeProxy, provider_upstream: Any, family: Family, stream: bool
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)

    response, sent = post(proxy, family.path, family.request(USER_ID, stream=stream))

    assert response.status_code == 200
    assert response.headers["content-type"] == ("text/event-stream" if stream else "application/json")
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert provider_upstream.last.body == sent, "nothing is added to this family's requests"
    assert user_tokens(proxy) == family.tokens


def test_embeddings_are_attributed_counted_and_forwarded_byte_for_byte(
    make_proxy: MakeProxy, provider_upstream: Any
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)
    body = EMBEDDINGS.request(USER_ID, stream=False)
    del body["stream"]

    response, sent = post(proxy, EMBEDDINGS.path, body)

    assert response.status_code == 200
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert provider_upstream.last.body == sent
    assert user_tokens(proxy) == EMBEDDINGS.tokens


@pytest.mark.parametrize("family", [RESPONSES, ANTHROPIC], ids=lambda f: f.name)
@pytest.mark.parametrize("piece", [1, 3, 7, 64])
def test_stream_usage_is_read_whatever_the_chunk_boundaries(
    make_proxy: MakeProxy, provider_upstream: Any, family: Family, piece: int
) -> None:
    # The upstream cuts its stream every `piece` bytes: keys and usage objects span chunks.
    proxy = make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)

    response, _ = post(proxy, f"{family.path}?split={piece}", family.request(USER_ID, stream=True))

    assert response.status_code == 200
    assert user_tokens(proxy) == family.tokens


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_a_placeholder_in_the_identity_field_is_never_taken_for_a_user(
    make_proxy: MakeProxy, provider_upstream: Any, family: Family, stream: bool
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url)

    response, sent = post(proxy, family.path, family.request(PLACEHOLDER, stream=stream))

    assert response.status_code == 200
    # Portkey would copy the body's placeholder into `_user`: the proxy says "unidentified" instead.
    assert provider_upstream.last.metadata == {"_user": "unidentified"}, "a placeholder is never taken for a user"
    assert provider_upstream.last.body == sent


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_identity_header_holding_a_placeholder_falls_back_to_the_body_field(
    make_proxy: MakeProxy, provider_upstream: Any, family: Family
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url)

    post(proxy, family.path, family.request(USER_ID, stream=False), **{"x-librechat-user-id": PLACEHOLDER})

    assert provider_upstream.last.metadata == {"_user": EMAIL}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_an_object_id_in_the_identity_header_wins_over_the_body(
    make_proxy: MakeProxy, provider_upstream: Any, family: Family
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url)

    post(proxy, family.path, family.request(OTHER_ID, stream=False), **{"x-librechat-user-id": USER_ID})

    assert provider_upstream.last.metadata == {"_user": EMAIL}


@pytest.mark.parametrize(
    ("user", "safety_identifier"),
    [(PLACEHOLDER, USER_ID), ("", USER_ID), ("tim", USER_ID), (USER_ID, PLACEHOLDER), (USER_ID, OTHER_ID)],
)
def test_responses_take_user_then_safety_identifier_an_object_id_first(
    make_proxy: MakeProxy, provider_upstream: Any, user: str, safety_identifier: str
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url)
    body = {**RESPONSES.request(user, stream=False), "safety_identifier": safety_identifier}

    post(proxy, RESPONSES.path, body)

    assert provider_upstream.last.metadata == {"_user": EMAIL}


def test_streaming_chat_completions_still_ask_for_usage_and_are_counted(
    make_proxy: MakeProxy, provider_upstream: Any
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)

    post(proxy, "/v1/chat/completions", {"model": "m", "messages": [], "stream": True, "user": USER_ID})
    post(proxy, "/v1/chat/completions", {"model": "m", "messages": [], "user": USER_ID})

    assert provider_upstream.received[0].json()["stream_options"] == {"include_usage": True}
    assert user_tokens(proxy) == {"prompt": 5, "completion": 1, "total": 12}


@pytest.mark.parametrize("path", ["/v1/threads/thread_1/messages", "/v1/audio/speech", "/v1/something-new"])
def test_unknown_paths_take_the_header_identity_only_and_leave_the_body_alone(
    make_proxy: MakeProxy, provider_upstream: Any, path: str
) -> None:
    proxy = make_proxy(portkey_url=provider_upstream.url)
    body = {"user": USER_ID, "safety_identifier": USER_ID, "metadata": {"user_id": USER_ID}, "stream": True}

    _, sent = post(proxy, path, body)
    # The body names nobody on an unknown path; `_user` is still set, so Portkey copies nothing from it.
    assert provider_upstream.last.metadata == {"_user": "unidentified"}
    assert provider_upstream.last.body == sent

    post(proxy, path, body, **{"x-librechat-user-id": USER_ID})
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert provider_upstream.last.body == sent


def test_counting_tokens_holds_no_chunk_back(make_proxy: MakeProxy, provider_upstream: Any) -> None:
    # Part N+1 leaves the upstream only once the client has part N: scanning for usage must not wait.
    proxy = make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)
    body = ANTHROPIC.request(USER_ID, stream=True)

    with httpx.stream("POST", proxy.url + "/gated/v1/messages", json=body, timeout=5) as response:
        events = response.iter_lines()
        assert next(events) == "event: message_start"
        for gate in provider_upstream.gates[1:]:
            assert next(event for event in events if event.startswith("event: "))
            gate.set()
        assert [event for event in events if event.startswith("event: ")][-1] == "event: message_stop"

    assert user_tokens(proxy) == ANTHROPIC.tokens
