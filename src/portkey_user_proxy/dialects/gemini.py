"""Google's Gemini API through Portkey: `POST .../models/<model>:generateContent` and `:streamGenerateContent`.

The body names no user: the identity comes from the header alone, the model from the path, and the
answer names it as `modelVersion`. Usage is `usageMetadata`, in the
JSON response and in every event of a stream (a running total, so the last one counts):
`promptTokenCount` (cached tokens included, as `cachedContentTokenCount`), `candidatesTokenCount`
and `thoughtsTokenCount` (billed as output), `totalTokenCount`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .dialect import Dialect
from .usage import Usage, tokens


class Gemini(Dialect):
    usage_key: ClassVar[bytes] = b'"usageMetadata"'
    model_key: ClassVar[bytes] = b'"modelVersion"'

    def requested_model(self, path: str, body: Mapping[str, Any]) -> str | None:
        # `.../models/gemini-2.0-flash:generateContent`: the segment after `models/`, before the method.
        segment = path.rpartition("/models/")[2]
        model = segment.rpartition(":")[0]
        return model or None

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        prompt = tokens(reported, "promptTokenCount")
        completion = tokens(reported, "candidatesTokenCount", "thoughtsTokenCount")
        total = tokens(reported, "totalTokenCount")
        if prompt is None and completion is None and total is None:
            return None
        return Usage(prompt, completion, total, tokens(reported, "cachedContentTokenCount"))
