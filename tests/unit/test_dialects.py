from __future__ import annotations

import json

import pytest

from portkey_user_proxy.dialects import UNKNOWN, dialect_for
from portkey_user_proxy.dialects.anthropic_messages import AnthropicMessages
from portkey_user_proxy.dialects.chat_completions import ChatCompletions
from portkey_user_proxy.dialects.openai_user import OpenAIUserField
from portkey_user_proxy.dialects.responses import Responses
from portkey_user_proxy.dialects.usage import Usage

USER_ID = "6651f0c2a1b2c3d4e5f60718"


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/chat/completions", ChatCompletions),
        ("/openai/deployments/gpt-4o/chat/completions", ChatCompletions),
        ("/v1/responses", Responses),
        ("/v1/messages", AnthropicMessages),
        ("/anthropic/v1/messages", AnthropicMessages),
        ("/v1/completions", OpenAIUserField),
        ("/v1/embeddings", OpenAIUserField),
        ("/v1/moderations", OpenAIUserField),
        ("/v1/images/generations", OpenAIUserField),
    ],
)
def test_the_family_is_known_by_how_the_path_ends(path: str, family: type) -> None:
    assert type(dialect_for(path)) is family


@pytest.mark.parametrize(
    "path",
    [
        "/v1/threads/thread_1/messages",  # OpenAI Assistants: not Anthropic's Messages API
        "/v1/messages/count_tokens",
        "/v1/responses/resp_1",
        "/v1/models",
        "/v1/audio/transcriptions",
        "/v1/chat/completions/extra",
        "/",
    ],
)
def test_other_paths_are_unknown(path: str) -> None:
    dialect = dialect_for(path)

    assert dialect is UNKNOWN
    assert not dialect.reads_body
    assert dialect.identity_fields({"user": USER_ID}) == ()
    # Their answers may still report usage as OpenAI does (runs, transcriptions): it is read, so it is charged.
    assert dialect.usage({"total_tokens": 5}) == Usage(total=5)


def test_identity_fields_in_each_familys_order() -> None:
    body = {"user": "u", "safety_identifier": "s", "metadata": {"user_id": "m"}}

    assert ChatCompletions().identity_fields(body) == ("u",)
    assert OpenAIUserField().identity_fields(body) == ("u",)
    assert Responses().identity_fields(body) == ("u", "s", "m")
    assert AnthropicMessages().identity_fields(body) == ("m",)


@pytest.mark.parametrize("metadata", [None, "m", ["user_id"], 7])
def test_anthropic_metadata_that_is_not_an_object_names_nobody(metadata: object) -> None:
    assert AnthropicMessages().identity_fields({"metadata": metadata}) == ()


@pytest.mark.parametrize("family", [Responses(), AnthropicMessages(), OpenAIUserField()])
def test_only_chat_completions_ask_for_stream_usage(family: object) -> None:
    raw = b'{"stream":true,"model":"m"}'
    body = json.loads(raw)

    assert family.request_body(raw, body, stream_usage=True) is raw  # type: ignore[attr-defined]
    assert json.loads(ChatCompletions().request_body(raw, body, stream_usage=True))["stream_options"] == {
        "include_usage": True
    }
    assert ChatCompletions().request_body(raw, body, stream_usage=False) is raw


@pytest.mark.parametrize(
    ("reported", "usage"),
    [
        ({"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}, Usage(5, 1, 6)),
        ({"prompt_tokens": 8, "total_tokens": 8}, Usage(8, None, 8)),
        ({"total_tokens": 6}, Usage(None, None, 6)),
        ({"input_tokens": 812, "output_tokens": 164, "total_tokens": 976}, Usage(812, 164, 976)),
        ({"input_tokens_details": {"cached_tokens": 3}}, None),
        (
            {"prompt_tokens": 900, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 768}},
            Usage(900, 9, None, cached_prompt=768),
        ),
        (
            {"input_tokens": 900, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 512}},
            Usage(900, 9, None, cached_prompt=512),
        ),
        ({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": "5"}}, Usage(5, None, None)),
        ({"prompt_tokens": "5"}, None),
    ],
)
def test_openai_usage_under_either_naming(reported: dict[str, object], usage: Usage | None) -> None:
    assert OpenAIUserField().usage(reported) == usage
    assert Responses().usage(reported) == usage
    assert ChatCompletions().usage(reported) == usage


@pytest.mark.parametrize(
    ("reported", "usage"),
    [
        ({"input_tokens": 25, "output_tokens": 15}, Usage(25, 15, 40)),
        (
            {
                "input_tokens": 5,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 7,
            },
            Usage(1105, 7, 1112, cached_prompt=1000, cache_write=100),
        ),
        (
            {"input_tokens": 5, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 0, "output_tokens": 7},
            Usage(2053, 7, 2060, cached_prompt=0, cache_write=2048),
        ),
        ({"output_tokens": 15}, Usage(None, 15, 15)),
        ({"server_tool_use": {"web_search_requests": 1}}, None),
    ],
)
def test_anthropic_input_counts_as_prompt_output_as_completion(reported: dict[str, object], usage: Usage) -> None:
    assert AnthropicMessages().usage(reported) == usage
