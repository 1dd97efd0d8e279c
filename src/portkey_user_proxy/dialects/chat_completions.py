"""OpenAI chat completions, LibreChat's main route: `user` in the body, usage asked for in streams.

Without `stream_options.include_usage`, which LibreChat does not send to custom endpoints, a stream
carries no token counts, and Portkey cannot cost it. A stream whose cost counts against a budget
gets it whatever the client said. The field is chat-completions-only: other
families must never get it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .json_body import with_stream_usage
from .openai_user import OpenAIUserField


class ChatCompletions(OpenAIUserField):
    def request_body(self, raw: bytes, body: Mapping[str, Any], *, stream_usage: bool, charged: bool = False) -> bytes:
        if charged:
            return with_stream_usage(raw, body, insist=True)
        return with_stream_usage(raw, body) if stream_usage else raw
