"""The OpenAI Responses API (`useResponsesApi`, and web search on OpenAI-compatible endpoints).

The user id is in `user`, or in `safety_identifier`, OpenAI's replacement for it (newer clients send
only that), or in `metadata.user_id`, where LibreChat's Responses path has put it. A stream reports
usage by itself in its final `response.completed` event, so nothing is added to the body:
`stream_options` is not a field of this API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .openai_user import OpenAIUserField


class Responses(OpenAIUserField):
    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        metadata = body.get("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
        return (body.get("user"), body.get("safety_identifier"), user_id)
