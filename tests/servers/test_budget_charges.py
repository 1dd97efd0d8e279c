"""End to end: every answer that reached the upstream is charged, never $0 by accident.

The client that leaves before the usage arrives (LibreChat's Stop button), an answer compressed although
`identity` was asked, a body without a Content-Type, a route whose answer is not OpenAI's, an answer
with no usage at all: each is charged what it reported, or an estimate, and the estimate is counted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from genai_prices import Usage as CatalogueUsage
from genai_prices import calc_price

from portkey_user_proxy import Settings
from portkey_user_proxy.budgets.estimates import DEFAULT_OUTPUT_TOKENS
from tests.support.mongo import needs_stand_in
from tests.support.mongomock_server import Fault, WritableMongo
from tests.support.proxy import RunningProxy, scrape, start_proxy
from tests.support.servers import ServerThread, read_body

USER_ID = "6651f0c2a1b2c3d4e5f60718"  # the fixture user: timmanik@email.com, in Finance and Engineering
EMAIL = "timmanik@email.com"
# $1 a token, in and out: a charge in dollars is a count of tokens.
BUDGETS = """\
period: month
prices:
  - {model: "*", input: 1000000, output: 1000000}
users:
  default: 500
"""
DOLLAR = 10**9  # nanodollars
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
Send = Callable[..., Any]
Script = Callable[[dict[str, Any], Callable[..., Any], Callable[..., Any]], Any]


class ScriptedPortkey:
    """A Portkey whose answer each test scripts; it records the bodies it was sent."""

    def __init__(self) -> None:
        self.script: Script = _json_answer
        self.bodies: list[bytes] = []
        self.left = threading.Semaphore(0)  # released each time the proxy left an answer before its end

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.bodies.append(body)
        await self.script(scope, receive, send)

    async def until_the_proxy_leaves(self, receive: Callable[..., Any]) -> None:
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0)
        self.left.release()


async def _start(send: Callable[..., Any], content_type: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [(b"content-type", content_type), *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _json_answer(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    await _start(send, b"application/json")
    await send({"type": "http.response.body", "body": json.dumps({"model": "gpt-4o", "usage": USAGE}).encode()})


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.fixture
def portkey() -> Iterator[tuple[ScriptedPortkey, str]]:
    app = ScriptedPortkey()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def librechat(writable_librechat: WritableMongo) -> WritableMongo:
    return writable_librechat


def budget_proxy(
    mongo: WritableMongo, portkey_url: str, tmp_path: Path, budgets_text: str = BUDGETS, **overrides: Any
) -> RunningProxy:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(budgets_text)
    values: dict[str, Any] = {
        "portkey_url": portkey_url,
        "mongo_uri": mongo.uri(mongo.librechat),
        "budgets_file": str(budgets),
        "budget_database": mongo.database,
        **overrides,
    }
    return start_proxy(Settings(_env_file=None, **values))  # type: ignore[call-arg]


@pytest.fixture
def proxy(librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path) -> Iterator[RunningProxy]:
    running = budget_proxy(librechat, portkey[1], tmp_path)
    yield running
    running.server.stop()


def user_spend(mongo: WritableMongo) -> int:
    with mongo.client() as client:
        document = client[mongo.database]["spend"].find_one({"scope": "user", "name": EMAIL})
    return int(document["spend"]) if document else 0


def spend_after_stop(proxy: RunningProxy, mongo: WritableMongo) -> int:
    proxy.server.stop()  # writes what is still waiting
    return user_spend(mongo)


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": USER_ID, **fields}


def wait_for_requests(proxy: RunningProxy, status: str, count: int) -> None:
    """Until the proxy has finished `count` requests with `status`: each is charged before it is counted."""
    for _ in range(500):
        if (
            scrape(proxy).get(
                ("portkey_user_proxy_requests_total", (("route", "chat_completions"), ("status", status)))
            )
            == count
        ):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"the proxy did not finish {count} requests with status {status}")


def test_streams_left_before_their_usage_are_charged_an_estimate_until_the_budget_refuses(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    upstream, _ = portkey

    async def fifty_chunks_unless_left(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        await _start(send, b"text/event-stream")
        for index in range(50):
            chunk = {"model": "gpt-4o", "choices": [{"delta": {"content": f"t{index}"}}]}
            await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
            if index == 47:
                await upstream.until_the_proxy_leaves(receive)  # the client presses Stop here
                return

    upstream.script = fifty_chunks_unless_left
    statuses = []
    for _ in range(20):
        with httpx.stream(
            "POST", proxy.url + "/v1/chat/completions", json=chat_body(stream=True), timeout=10
        ) as response:
            statuses.append(response.status_code)
            if response.status_code != 200:
                continue
            events = 0
            for line in response.iter_lines():
                events += line.startswith("data:")
                if events == 48:
                    break  # Stop: the client leaves before the usage, which never came
        if statuses[-1] == 200:
            assert upstream.left.acquire(timeout=10)
            wait_for_requests(proxy, "499", statuses.count(200))

    assert 412 in statuses
    refused_from = statuses.index(412)
    assert statuses[refused_from:] == [412] * (20 - refused_from)
    # Each left stream cost about 48 output tokens and the prompt's estimate (~30): $70-90 of $500.
    spend = spend_after_stop(proxy, librechat)
    assert 500 * DOLLAR <= spend <= 600 * DOLLAR
    assert spend == statuses.count(200) * (spend // statuses.count(200))  # every left stream charged alike


def test_a_stream_that_said_no_to_usage_is_asked_for_it_when_budgeted(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str]
) -> None:
    upstream, _ = portkey
    body = chat_body(stream=True, stream_options={"include_usage": False})

    httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=10)

    assert json.loads(upstream.bodies[-1])["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_an_answer_in_a_coding_is_charged_its_usage_and_relayed_as_it_came(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo, encoding: str
) -> None:
    upstream, _ = portkey
    answer = json.dumps({"model": "gpt-4o", "usage": USAGE}).encode()
    sent = gzip.compress(answer) if encoding == "gzip" else answer

    async def coded(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        # Although the proxy asked for `identity`: some gateways compress whatever they are asked.
        await _start(send, b"application/json", (b"content-encoding", encoding.encode()))
        await send({"type": "http.response.body", "body": sent})

    upstream.script = coded
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=chat_body(), timeout=10) as response:
        relayed = b"".join(response.iter_raw())

    assert relayed == sent
    assert spend_after_stop(proxy, librechat) == 8 * DOLLAR


def test_a_json_body_without_a_content_type_is_attributed_and_charged(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    content = json.dumps(chat_body()).encode()

    response = httpx.post(proxy.url + "/v1/chat/completions", content=content, timeout=10)

    assert response.status_code == 200
    assert spend_after_stop(proxy, librechat) == 8 * DOLLAR


def test_gemini_answers_are_charged_from_their_usage_metadata(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    upstream, _ = portkey

    async def gemini(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _start(send, b"application/json")
        usage = {"promptTokenCount": 7, "candidatesTokenCount": 2, "thoughtsTokenCount": 1, "totalTokenCount": 10}
        await send({"type": "http.response.body", "body": json.dumps({"usageMetadata": usage}).encode()})

    upstream.script = gemini
    headers = {"x-librechat-user-id": USER_ID}
    body = {"contents": [{"parts": [{"text": "hi"}]}]}

    response = httpx.post(
        proxy.url + "/v1beta/models/gemini-2.0-flash:generateContent", json=body, headers=headers, timeout=10
    )

    assert response.status_code == 200
    assert spend_after_stop(proxy, librechat) == 10 * DOLLAR


def test_an_answer_without_usage_is_charged_an_estimate_and_counted(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    upstream, _ = portkey

    async def no_usage(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _start(send, b"application/json")
        await send({"type": "http.response.body", "body": b'{"model": "gpt-4o", "choices": [' + b" " * 400 + b"]}"})

    upstream.script = no_usage
    content = json.dumps(chat_body()).encode()

    assert httpx.post(proxy.url + "/v1/chat/completions", content=content, timeout=10).status_code == 200

    estimated = len(content) // 4 + 440 // 4  # the prompt's bytes and the answer's, four a token
    assert abs(spend_after_stop(proxy, librechat) - estimated * DOLLAR) <= 2 * DOLLAR


def test_a_client_that_leaves_before_the_answer_is_charged_what_admission_expected(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    upstream, _ = portkey
    thinking = threading.Event()

    async def think_forever(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        thinking.set()
        await upstream.until_the_proxy_leaves(receive)

    upstream.script = think_forever
    content = json.dumps(chat_body()).encode()
    host, port = proxy.url.removeprefix("http://").split(":")
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(content)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(head.encode() + content)
        assert thinking.wait(10)  # the request reached the upstream, which has not answered yet
    assert upstream.left.acquire(timeout=10)
    wait_for_requests(proxy, "499", 1)

    # The provider may generate the answer whole all the same: its prompt, and the output it was expected to
    # produce (no `max_tokens`, no answers of the model seen yet: the default).
    assert spend_after_stop(proxy, librechat) == (len(content) // 4 + DEFAULT_OUTPUT_TOKENS) * DOLLAR


@needs_stand_in()
@pytest.mark.parametrize(("policy", "status"), [("deny", 503), ("allow", 200)])
def test_with_mongodb_down_a_user_never_seen_is_refused_under_deny(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path, policy: str, status: int
) -> None:
    proxy = budget_proxy(librechat, portkey[1], tmp_path, budget_store_failure=policy)
    try:
        assert librechat.stand_in is not None
        librechat.stand_in.fault = Fault.HANG_UP  # users and spend live on the same MongoDB: both are down

        response = httpx.post(proxy.url + "/v1/chat/completions", json=chat_body(), timeout=30)

        assert response.status_code == status
        if policy == "deny":  # who this is cannot be told, so neither can their budget
            assert response.json()["error"]["code"] == "budget_store_unavailable"
            assert response.headers["retry-after"] == "5"
    finally:
        proxy.server.stop()


def test_a_group_members_allowance_is_their_limit_and_the_refusal_names_it(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path
) -> None:
    allowances = BUDGETS.replace("users:", "teams:\n  Engineering: {each: 20}\nusers:")  # and `default: 500`
    proxy = budget_proxy(librechat, portkey[1], tmp_path, allowances, team_metadata_key="team")
    try:
        statuses = [httpx.post(proxy.url + "/v1/chat/completions", json=chat_body(), timeout=10) for _ in range(4)]

        assert [response.status_code for response in statuses] == [200, 200, 200, 412]  # $8 each, of $20
        message = statuses[-1].json()["error"]["message"]
        assert message.startswith("you have used your Engineering allowance of $20 for ")
    finally:
        proxy.server.stop()


@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o", "@openai-prod/gpt-4o"])
def test_without_prices_in_the_file_an_answer_costs_the_catalogues_price(
    librechat: WritableMongo, portkey: tuple[ScriptedPortkey, str], tmp_path: Path, model: str
) -> None:
    upstream, url = portkey

    async def named_by_the_request(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        await _start(send, b"application/json")  # an answer that names no model: the request's prices it
        body = {"usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}}
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    upstream.script = named_by_the_request
    proxy = budget_proxy(librechat, url, tmp_path, "users: {default: 500}\n")
    assert httpx.post(proxy.url + "/v1/chat/completions", json=chat_body(model=model), timeout=10).status_code == 200

    price = calc_price(CatalogueUsage(input_tokens=1_000_000, output_tokens=1_000_000), "gpt-4o", provider_id="openai")
    assert spend_after_stop(proxy, librechat) == int(price.total_price * DOLLAR)


CATALOGUE_ONLY = "users: {default: 500}\n"  # the README's advice: `prices` only for negotiated prices


def test_a_responses_answer_echoing_a_tool_schema_with_a_usage_property_is_charged_its_usage(
    proxy: RunningProxy, portkey: tuple[ScriptedPortkey, str], librechat: WritableMongo
) -> None:
    """The Responses API echoes the request's `tools` (JSON schemas the client wrote) before its `usage`: a
    schema property named `usage` is not the answer's usage, the last usage object is."""
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
    """Gemini's model is in the path, never in the body, and its answers say `modelVersion`: priced by
    the catalogue from either."""
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
    """An answer naming a model nothing prices (a deployment's own name, a fine-tune alias) is priced by
    the request's `model`."""
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
    non-streamed generation, a reasoning model thinking): the provider bills the generation, so the budget
    is charged what admission expected of it."""
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
    """Base64 payloads (images) are left out of a prompt's estimate; text that merely mentions `;base64,`
    is text, and counts whole."""
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
    """A transcription's form names its `model` beside the file (the body streams through unread): its
    usage is priced by that model."""
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
