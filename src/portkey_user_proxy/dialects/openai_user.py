"""OpenAI-style routes that name the user in the body's top-level `user`: embeddings, completions,
moderations, image generation.

Their usage objects count `prompt_tokens`/`completion_tokens`/`total_tokens`, or, in the newer APIs
(image generation, Responses), `input_tokens`/`output_tokens`/`total_tokens`. The prompt tokens read
from OpenAI's prompt cache are in `prompt_tokens_details.cached_tokens` (`input_tokens_details` in the
newer APIs), and are part of the prompt's count. OpenAI caches prompts without charging for the
writes: there are no cache-write tokens to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .dialect import Dialect
from .usage import Usage, nested_tokens, tokens


class OpenAIUserField(Dialect):
    name: ClassVar[str] = "openai"
    reads_body: ClassVar[bool] = True
    reports_usage: ClassVar[bool] = True

    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        return (body.get("user"),)

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        prompt = tokens(reported, "prompt_tokens") if "prompt_tokens" in reported else tokens(reported, "input_tokens")
        completion = (
            tokens(reported, "completion_tokens")
            if "completion_tokens" in reported
            else tokens(reported, "output_tokens")
        )
        total = tokens(reported, "total_tokens")
        if prompt is None and completion is None and total is None:
            return None
        cached = nested_tokens(reported, "prompt_tokens_details", "cached_tokens")
        if cached is None:
            cached = nested_tokens(reported, "input_tokens_details", "cached_tokens")
        return Usage(prompt, completion, total, cached_prompt=cached)  # OpenAI reports no cache writes
