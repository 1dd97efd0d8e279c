"""The official `openai` and `anthropic` Python SDKs as clients of the running proxy.

They send what real clients send (their own headers, JSON spelling, `stream` handling) and parse
what comes back, so these tests show that each family's requests are attributed and counted and
that the answers still read as the SDK expects them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.providers import (
    ANTHROPIC_INPUT,
    ANTHROPIC_OUTPUT,
    ANTHROPIC_TOKENS,
    EMBEDDING_TOKENS_COUNTED,
    RESPONSES_TOKENS,
    RESPONSES_USAGE,
    TRICKY_TEXT,
)
from tests.support.providers import user_tokens as tokens_of
from tests.support.proxy import MakeProxy, RunningProxy

EMAIL = "timmanik@email.com"
USER_ID = "6651f0c2a1b2c3d4e5f60718"


def user_tokens(proxy: RunningProxy) -> dict[str, float]:
    return tokens_of(proxy.url, EMAIL)


@pytest.fixture
def counting_proxy(make_proxy: MakeProxy, provider_upstream: Any) -> RunningProxy:
    return make_proxy(portkey_url=provider_upstream.url, metrics_per_user_tokens=True)


@pytest.fixture
def openai_client(counting_proxy: RunningProxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=counting_proxy.url + "/v1", api_key="dummy", max_retries=0, timeout=10) as client:
        yield client


@pytest.fixture
def anthropic_client(counting_proxy: RunningProxy) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=counting_proxy.url, api_key="dummy", max_retries=0, timeout=10) as client:
        yield client


def test_openai_responses(openai_client: openai.OpenAI, counting_proxy: RunningProxy, provider_upstream: Any) -> None:
    response = openai_client.responses.create(model="gpt-5", input="Hi", user=USER_ID)

    assert response.usage is not None and response.usage.total_tokens == RESPONSES_USAGE["total_tokens"]
    assert response.output_text == TRICKY_TEXT
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert user_tokens(counting_proxy) == RESPONSES_TOKENS


def test_openai_responses_streamed_with_safety_identifier_only(
    openai_client: openai.OpenAI, counting_proxy: RunningProxy, provider_upstream: Any
) -> None:
    stream = openai_client.responses.create(model="gpt-5", input="Hi", safety_identifier=USER_ID, stream=True)
    events = list(stream)

    assert [event.type for event in events][-1] == "response.completed"
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert "stream_options" not in provider_upstream.last.json()
    assert user_tokens(counting_proxy) == RESPONSES_TOKENS


def test_openai_chat_completions_streamed(
    openai_client: openai.OpenAI, counting_proxy: RunningProxy, provider_upstream: Any
) -> None:
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], user=USER_ID, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text == "Hello"
    assert provider_upstream.last.json()["stream_options"] == {"include_usage": True}
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert user_tokens(counting_proxy) == {"total": 6}


def test_openai_embeddings(openai_client: openai.OpenAI, counting_proxy: RunningProxy, provider_upstream: Any) -> None:
    result = openai_client.embeddings.create(model="text-embedding-3-small", input="hello", user=USER_ID)

    assert result.data[0].embedding == [0.25, -0.5]
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert user_tokens(counting_proxy) == EMBEDDING_TOKENS_COUNTED


def test_anthropic_messages(
    anthropic_client: anthropic.Anthropic, counting_proxy: RunningProxy, provider_upstream: Any
) -> None:
    message = anthropic_client.messages.create(
        model="claude-opus-4-7",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello"}],
        metadata={"user_id": USER_ID},
    )

    assert (message.usage.input_tokens, message.usage.output_tokens) == (ANTHROPIC_INPUT, ANTHROPIC_OUTPUT)
    assert provider_upstream.last.path == "/v1/messages"
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert user_tokens(counting_proxy) == ANTHROPIC_TOKENS


def test_anthropic_messages_streamed(
    anthropic_client: anthropic.Anthropic, counting_proxy: RunningProxy, provider_upstream: Any
) -> None:
    with anthropic_client.messages.stream(
        model="claude-opus-4-7",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello"}],
        metadata={"user_id": USER_ID},
    ) as stream:
        final = stream.get_final_message()

    assert final.usage.output_tokens == ANTHROPIC_OUTPUT
    assert "".join(block.text for block in final.content if block.type == "text") == TRICKY_TEXT
    assert provider_upstream.last.metadata == {"_user": EMAIL}
    assert "stream_options" not in provider_upstream.last.json()
    assert user_tokens(counting_proxy) == ANTHROPIC_TOKENS
