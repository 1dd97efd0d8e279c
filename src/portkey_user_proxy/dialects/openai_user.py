"""OpenAI-style routes that name the user in the body's top-level `user`: embeddings, completions,
moderations, image generation.

Their usage objects are OpenAI's (`dialect.openai_usage`). OpenAI caches prompts without charging for
the writes: there are no cache-write tokens to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .dialect import Dialect


class OpenAIUserField(Dialect):
    reads_body: ClassVar[bool] = True

    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        return (body.get("user"),)
