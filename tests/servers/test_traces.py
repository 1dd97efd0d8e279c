"""Conversation traces: the conversation header becomes `x-portkey-trace-id` when the request has none."""

from __future__ import annotations

import re

import httpx
import pytest

from portkey_user_proxy.app import conversation_trace
from portkey_user_proxy.settings import Settings, SettingsError, load_settings
from portkey_user_proxy.upstream.traces import ConversationTrace
from tests.support.deploy_files import librechat_example, portkey_endpoint
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream

CONVERSATION = b"4f1c2a9e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
HEADER = b"x-librechat-conversation-id"
TRACE = ConversationTrace(HEADER.decode())


def test_the_conversation_becomes_the_trace_and_its_header_stays_here() -> None:
    outgoing = TRACE.apply([(b"content-type", b"application/json"), (HEADER, CONVERSATION)])

    assert outgoing == [(b"content-type", b"application/json"), (b"x-portkey-trace-id", CONVERSATION)]


def test_a_requests_own_trace_id_wins() -> None:
    outgoing = TRACE.apply([(b"x-portkey-trace-id", b"own-trace"), (HEADER, CONVERSATION)])

    assert outgoing == [(b"x-portkey-trace-id", b"own-trace")]


def test_a_blank_trace_id_is_replaced() -> None:
    outgoing = TRACE.apply([(b"x-portkey-trace-id", b" "), (HEADER, CONVERSATION)])

    assert outgoing == [(b"x-portkey-trace-id", CONVERSATION)]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"new",  # LibreChat's name for a conversation not created yet
        b"null",
        b"undefined",
        b"{{LIBRECHAT_BODY_CONVERSATIONID}}",  # a placeholder LibreChat left unresolved
        b"two words",
        b"x" * 129,
        "é".encode(),
    ],
)
def test_values_that_are_no_conversation_id_make_no_trace(value: bytes) -> None:
    assert TRACE.apply([(b"accept", b"*/*"), (HEADER, value)]) == [(b"accept", b"*/*")]


def test_without_the_header_the_headers_are_left_alone() -> None:
    headers = [(b"accept", b"*/*"), (b"x-portkey-trace-id", b"")]

    assert TRACE.apply(headers) is headers


def test_an_empty_setting_switches_traces_off() -> None:
    assert conversation_trace(load_settings(_env_file=None, conversation_id_header="")) is None
    enabled = conversation_trace(load_settings(_env_file=None, conversation_id_header=" X-Conversation "))
    assert enabled is not None
    assert enabled.apply([(b"x-conversation", b"c-1")]) == [(b"x-portkey-trace-id", b"c-1")]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("x conversation", "valid HTTP header name"), ("x-portkey-trace-id", "must not be an x-portkey-* header")],
)
def test_unusable_header_names_are_refused(value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"CONVERSATION_ID_HEADER: .*{re.escape(problem)}"):
        load_settings(_env_file=None, conversation_id_header=value)


def chat(proxy: RunningProxy, headers: dict[str, str]) -> httpx.Response:
    body = {"user": "6651f0c2a1b2c3d4e5f60718", "messages": []}
    return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_a_conversations_calls_share_one_trace(proxy: RunningProxy, upstream: Upstream) -> None:
    for _ in range(2):  # a chat turn and its title call, say
        assert chat(proxy, {HEADER.decode(): CONVERSATION.decode()}).status_code == 200

    for received in upstream.received:
        assert received.headers["x-portkey-trace-id"] == CONVERSATION.decode()
        assert HEADER.decode() not in received.headers


def test_switched_off_the_header_passes_through(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(conversation_id_header="")

    chat(proxy, {HEADER.decode(): CONVERSATION.decode()})

    assert upstream.last.headers[HEADER.decode()] == CONVERSATION.decode()
    assert "x-portkey-trace-id" not in upstream.last.headers


def test_the_librechat_example_fills_the_header_the_proxy_reads() -> None:
    headers = portkey_endpoint(librechat_example())["headers"]

    assert headers[Settings.model_fields["conversation_id_header"].default] == "{{LIBRECHAT_BODY_CONVERSATIONID}}"
