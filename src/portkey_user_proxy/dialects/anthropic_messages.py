"""Anthropic's Messages API, `POST /v1/messages`: LibreChat's Anthropic endpoint pointed at Portkey.

The user id is in `metadata.user_id`. Usage is `usage` in the JSON response; a stream reports input
tokens in `message_start.message.usage` and the output tokens so far in each `message_delta.usage`,
so the merged fields hold the input of the first and the output of the last. Streams report usage
by themselves: nothing is added to the body. Input comes in three kinds, each priced on its own:
plain input, cache writes and cache reads; the prompt is their sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .dialect import Dialect
from .usage import Usage, tokens

# Input tokens are billed in three parts; OpenAI's `prompt_tokens` includes its cached tokens likewise.
_INPUT = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicMessages(Dialect):
    usage_in_parts: ClassVar[bool] = True  # input in `message_start`, output in each `message_delta`
    reads_body: ClassVar[bool] = True

    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        metadata = body.get("metadata")
        return (metadata.get("user_id"),) if isinstance(metadata, Mapping) else ()

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        prompt = tokens(reported, *_INPUT)
        completion = tokens(reported, "output_tokens")
        if prompt is None and completion is None:
            return None
        return Usage(
            prompt,
            completion,
            (prompt or 0) + (completion or 0),
            cached_prompt=tokens(reported, "cache_read_input_tokens"),
            cache_write=tokens(reported, "cache_creation_input_tokens"),
        )
