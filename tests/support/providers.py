"""A fake Portkey that answers each API family the way its provider does, JSON or streamed.

/v1/responses           OpenAI Responses: a `response` object, or its event stream ending in
                        `response.completed` (usage 812 in, 164 out, 976 total, from the fixture)
/v1/messages            Anthropic Messages: a `message`, or its event stream: input tokens in
                        `message_start`, output tokens so far in each `message_delta` (25 in, 15 out)
/v1/embeddings          embeddings with `usage` {prompt_tokens: 8, total_tokens: 8}
/gated/v1/messages      the Anthropic stream in three parts: the first at once, part N only once the
                        test sets `gates[N]`
anything else           as `tests.support.servers.Upstream`

`?split=N` sends the response body in pieces of N bytes, to cut keys and objects across chunks.
Model text in every stream holds `"usage"` and `{"input_tokens": 999}` as text, which must not count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fixtures import FIXTURES
from tests.support.servers import Received, Upstream

# Text a model may well write: it must never be taken for the response's usage.
TRICKY_TEXT = 'the "usage": {"input_tokens": 999, "output_tokens": 999, "prompt_tokens": 999}'

RESPONSES_USAGE = {"input_tokens": 812, "output_tokens": 164, "total_tokens": 976}
ANTHROPIC_INPUT, ANTHROPIC_OUTPUT = 25, 15
EMBEDDING_TOKENS = 8
# What the proxy's per-user token counters show for one such response, streamed or not.
RESPONSES_TOKENS = {
    "prompt": RESPONSES_USAGE["input_tokens"],
    "completion": RESPONSES_USAGE["output_tokens"],
    "total": RESPONSES_USAGE["total_tokens"],
}
ANTHROPIC_TOKENS = {
    "prompt": ANTHROPIC_INPUT,
    "completion": ANTHROPIC_OUTPUT,
    "total": ANTHROPIC_INPUT + ANTHROPIC_OUTPUT,
}
EMBEDDING_TOKENS_COUNTED = {"prompt": EMBEDDING_TOKENS, "total": EMBEDDING_TOKENS}


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def user_tokens(proxy_url: str, user: str) -> dict[str, float]:
    """The proxy's per-user token counters for `user`, by kind."""
    text = httpx.get(proxy_url + "/metrics").text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "portkey_user_proxy_user_tokens_total" and sample.labels["user"] == user
    }


class ProviderUpstream(Upstream):
    async def _answer(self, record: Received, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        body = json.loads(record.body) if record.body else {}
        split = int(parse_qs(record.query).get("split", ["0"])[0])
        if record.path == "/v1/responses":
            await _reply(send, _responses_stream() if body.get("stream") else _responses_json(), split)
        elif record.path == "/v1/messages":
            await _reply(send, _messages_stream() if body.get("stream") else _messages_json(), split)
        elif record.path == "/v1/embeddings":
            await _reply(send, _embeddings_json(), split)
        elif record.path == "/gated/v1/messages":
            await self._gated_messages(send)
        else:
            await super()._answer(record, receive, send)

    async def _gated_messages(self, send: Callable[..., Any]) -> None:
        _, payload = _messages_stream()
        events = payload.split(b"\n\n")[:-1]
        third = len(events) // 3
        parts = [events[:third], events[third : 2 * third], events[2 * third :]]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for number, (gate, part) in enumerate(zip(self.gates, parts, strict=True)):
            if number:
                await asyncio.to_thread(gate.wait, 10)
            body = b"".join(event + b"\n\n" for event in part)
            await send({"type": "http.response.body", "body": body, "more_body": number < len(parts) - 1})


Reply = tuple[bytes, bytes]  # content type, body


async def _reply(send: Callable[..., Any], reply: Reply, split: int) -> None:
    content_type, payload = reply
    headers = [(b"content-type", content_type)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    size = split or len(payload)
    for start in range(0, len(payload), size):
        await send({"type": "http.response.body", "body": payload[start : start + size], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _events(*events: tuple[str, dict[str, Any]]) -> Reply:
    text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return b"text/event-stream", text.encode()


def _json(payload: dict[str, Any]) -> Reply:
    return b"application/json", json.dumps(payload).encode()


def _response(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": TRICKY_TEXT}]}]
    return {"id": "resp_abc", "object": "response", "status": status, "output": output, "usage": usage}


def _responses_json() -> Reply:
    return _json({**_response("completed", RESPONSES_USAGE), "user": "echoed", "metadata": {"usage": "x"}})


def _responses_stream() -> Reply:
    delta = {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "delta": TRICKY_TEXT}
    completed_line = fixture("openai_responses_request.json")["stream_tail"].split("data: ", 1)[1].strip()
    return _events(
        ("response.created", {"type": "response.created", "response": _response("in_progress", None)}),
        ("response.output_text.delta", delta),
        ("response.completed", json.loads(completed_line)),
    )


def _message(output_tokens: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-7",
        "content": [{"type": "text", "text": TRICKY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": ANTHROPIC_INPUT, "output_tokens": output_tokens},
    }


def _messages_json() -> Reply:
    return _json(_message(ANTHROPIC_OUTPUT))


def _messages_stream() -> Reply:
    start = {**_message(1), "content": [], "stop_reason": None}
    text_delta = {"type": "text_delta", "text": TRICKY_TEXT}

    def message_delta(output_tokens: int) -> dict[str, Any]:
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        return {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}}

    return _events(
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": text_delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", message_delta(5)),
        ("message_delta", message_delta(ANTHROPIC_OUTPUT)),
        ("message_stop", {"type": "message_stop"}),
    )


def _embeddings_json() -> Reply:
    data = [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}]
    usage = {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}
    return _json({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage})
