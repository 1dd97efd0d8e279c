"""Ways an answer that reached the upstream is charged less than it cost (budget bypasses), end to end.

Each test states what a user relies on: an answer the provider bills is charged to the budget.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from genai_prices import Usage as CatalogueUsage
from genai_prices import calc_price

from tests.servers.test_budget_charges import (
    BUDGETS,
    DOLLAR,
    USER_ID,
    ScriptedPortkey,
    _start,
    budget_proxy,
    chat_body,
    spend_after_stop,
    wait_for_requests,
)
from tests.support.mongomock_server import WritableMongo
from tests.support.proxy import RunningProxy

CATALOGUE_ONLY = "users: {default: 500}\n"  # the README's advice: `prices` only for negotiated prices


def test_a_responses_answer_echoing_a_tool_schema_with_a_usage_property_is_charged_its_usage(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    """The Responses API echoes the request's `tools` (JSON schemas the client wrote) before its `usage`.

    A schema property named `usage` whose object holds `prompt_tokens: 0, completion_tokens: 0` is read as
    a usage object; the real one (`input_tokens`/`output_tokens`) never replaces those names, and
    `openai_usage` prefers them: the answer costs $0 however long it was.
    """
    upstream, _ = portkey
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"usage": {"type": "object", "prompt_tokens": 0, "completion_tokens": 0}},
            },
        }
    ]

    async def echoes_tools(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        request = json.loads(upstream.bodies[-1])
        answer = {
            "id": "resp_1",
            "object": "response",
            "model": "gpt-4o",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hello"}]}],
            "tools": request["tools"],  # as OpenAI's response object does
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        }
        await _start(send, b"application/json")
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    upstream.script = echoes_tools
    body = {"model": "gpt-4o", "input": "hi", "user": USER_ID, "tools": tools}

    assert httpx.post(proxy.url + "/v1/responses", json=body, timeout=10).status_code == 200

    assert spend_after_stop(proxy, librechat) == 8 * DOLLAR


def test_a_gemini_answer_priced_by_the_catalogue_is_not_free(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    """Gemini's model is in the path, never in the body, and its answers say `modelVersion`, not `model`:
    the charge is priced for model None, which no catalogue entry prices, so every Gemini answer is $0
    (and holds $0 at admission) unless the file has a catch-all `*` price."""
    upstream, url = portkey

    async def gemini(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _start(send, b"application/json")
        usage = {"promptTokenCount": 1_000_000, "candidatesTokenCount": 1_000_000, "totalTokenCount": 2_000_000}
        answer = {"candidates": [], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash"}
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    upstream.script = gemini
    running = budget_proxy(librechat, url, tmp_path, CATALOGUE_ONLY)
    response = httpx.post(
        running.url + "/v1beta/models/gemini-2.0-flash:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={"x-librechat-user-id": USER_ID},
        timeout=10,
    )
    assert response.status_code == 200

    usage = CatalogueUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    price = calc_price(usage, "gemini-2.0-flash", provider_id="google")
    assert spend_after_stop(running, librechat) == int(price.total_price * DOLLAR)


def test_an_answer_naming_an_unpriced_model_is_priced_by_the_requests_model(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    """The answer's model wins even when nothing prices it (a deployment's own name, a fine-tune alias),
    while the request's `model` is priced: the answer is charged $0, not the request model's price."""
    upstream, url = portkey

    async def deployment_name(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _start(send, b"application/json")
        usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
        answer = {"model": "acme-eu-deployment-7", "usage": usage}
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    upstream.script = deployment_name
    running = budget_proxy(librechat, url, tmp_path, CATALOGUE_ONLY)
    assert (
        httpx.post(running.url + "/v1/chat/completions", json=chat_body(model="gpt-4o"), timeout=10).status_code == 200
    )

    price = calc_price(CatalogueUsage(input_tokens=1_000_000, output_tokens=1_000_000), "gpt-4o", provider_id="openai")
    assert spend_after_stop(running, librechat) == int(price.total_price * DOLLAR)


def test_a_request_whose_answer_timed_out_upstream_is_charged(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    """A request sent whole, whose answer's head did not come within UPSTREAM_READ_TIMEOUT_SECONDS (a long
    non-streamed generation, a reasoning model thinking), is released as if never sent: the provider
    bills the generation, the budget is charged nothing. A user can repeat it without limit."""
    upstream, url = portkey
    reached = threading.Event()

    async def think_past_the_timeout(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        reached.set()
        await upstream.until_the_proxy_leaves(receive)

    upstream.script = think_past_the_timeout
    running = budget_proxy(librechat, url, tmp_path, BUDGETS, upstream_read_timeout_seconds=0.3)
    content = json.dumps(chat_body()).encode()

    response = httpx.post(running.url + "/v1/chat/completions", content=content, timeout=10)

    assert reached.is_set()  # the upstream had the whole request
    assert response.status_code == 504
    assert spend_after_stop(running, librechat) >= len(content) // 4 * DOLLAR  # at least the prompt's estimate


def test_a_prompt_mentioning_base64_is_estimated_whole_when_its_client_leaves(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    """`_base64_bytes` takes everything from `;base64,` to the next quote as a base64 payload: a text prompt
    that merely contains `;base64,` (no quotes after it) is estimated at ~0 tokens, so its hold is ~0
    (many such requests at once pass a nearly spent budget) and a client leaving before the answer pays ~0."""
    upstream, url = portkey
    thinking = threading.Event()

    async def think_forever(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        thinking.set()
        await upstream.until_the_proxy_leaves(receive)

    upstream.script = think_forever
    running = budget_proxy(librechat, url, tmp_path, BUDGETS)
    text = "Summarise the notes after the marker ;base64, " + "the quarterly figures were fine. " * 200
    content = json.dumps(chat_body(messages=[{"role": "user", "content": text}])).encode()
    host, port = running.url.removeprefix("http://").split(":")
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(content)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(head.encode() + content)
        assert thinking.wait(10)
    assert upstream.left.acquire(timeout=10)
    wait_for_requests(running, "499", 1)

    assert spend_after_stop(running, librechat) >= len(text) // 4 * DOLLAR


def test_a_transcription_that_reports_usage_is_not_free(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    """`/audio/transcriptions` is charged, but its multipart body is never read (no `model`) and its answer
    names none: usage is priced for model None, so under the catalogue's prices a transcription costs $0."""
    upstream, url = portkey

    async def transcribed(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _start(send, b"application/json")
        usage = {"type": "tokens", "input_tokens": 1_000_000, "output_tokens": 1_000_000, "total_tokens": 2_000_000}
        await send({"type": "http.response.body", "body": json.dumps({"text": "hello", "usage": usage}).encode()})

    upstream.script = transcribed
    running = budget_proxy(librechat, url, tmp_path, CATALOGUE_ONLY)
    response = httpx.post(
        running.url + "/v1/audio/transcriptions",
        files={"file": ("a.wav", b"RIFF....WAVE", "audio/wav")},
        data={"model": "gpt-4o-transcribe"},
        headers={"x-librechat-user-id": USER_ID},
        timeout=10,
    )
    assert response.status_code == 200

    assert spend_after_stop(running, librechat) > 0
