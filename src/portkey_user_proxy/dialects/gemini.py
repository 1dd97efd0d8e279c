"""Google's Gemini API through Portkey: `POST .../models/<model>:generateContent` and `:streamGenerateContent`.

The body names no user: the identity comes from the header alone. Usage is `usageMetadata`, in the
JSON response and in every event of a stream (a running total, so the last one counts):
`promptTokenCount` (cached tokens included, as `cachedContentTokenCount`), `candidatesTokenCount`
and `thoughtsTokenCount` (billed as output), `totalTokenCount`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .dialect import Dialect
from .usage import Usage, tokens


class Gemini(Dialect):
    name: ClassVar[str] = "gemini"
    usage_key: ClassVar[bytes] = b'"usageMetadata"'

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        prompt = tokens(reported, "promptTokenCount")
        completion = tokens(reported, "candidatesTokenCount", "thoughtsTokenCount")
        total = tokens(reported, "totalTokenCount")
        if prompt is None and completion is None and total is None:
            return None
        return Usage(prompt, completion, total, tokens(reported, "cachedContentTokenCount"))
