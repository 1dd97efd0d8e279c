"""What the proxy knows of one API family; the defaults are those of a path it does not know."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .usage import Usage, nested_tokens, tokens


class Dialect:
    """A path the proxy does not know: identity from the header only, the body forwarded untouched.

    A family overrides what it knows: where its requests carry the user id, whether and how a
    streaming request asks for usage, and what the `usage` objects of its responses mean.
    """

    # Whether the proxy needs the JSON body at all; when not, it streams through unread.
    reads_body: ClassVar[bool] = False
    # The key whose object holds a response's token counts, as it appears in the response's JSON.
    usage_key: ClassVar[bytes] = b'"usage"'
    # Whether the answer reports its usage in parts, each adding to the last (else the last object is it).
    usage_in_parts: ClassVar[bool] = False
    # The key naming the model that served an answer, in the answer's envelope.
    model_key: ClassVar[bytes] = b'"model"'

    def requested_model(self, path: str, body: Mapping[str, Any]) -> str | None:
        """The model the request asks for: the body's `model` (Gemini names it in the path)."""
        model = body.get("model")
        return model if isinstance(model, str) else None

    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        """The body's values that may name the user, the family's preferred one first."""
        return ()

    def request_body(self, raw: bytes, body: Mapping[str, Any], *, stream_usage: bool, charged: bool = False) -> bytes:
        """The body to send upstream: `raw`, exactly as received, unless the family must add to it.

        `stream_usage`: ask a stream for its usage unless the client said no (INCLUDE_STREAM_USAGE);
        `charged`: the answer's cost counts against a budget, so its usage is asked for whatever was said.
        """
        return raw

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        """The tokens that the response's merged `usage` fields report, when they report any.

        A path no family serves may still answer with OpenAI's usage object (Assistants runs, audio
        transcriptions, image edits, a provider's own route): it is read under OpenAI's names.
        """
        return openai_usage(reported)


def openai_usage(reported: Mapping[str, object]) -> Usage | None:
    """OpenAI's usage object: `prompt_tokens`/`completion_tokens`/`total_tokens`, or in the newer APIs
    (Responses, images, audio) `input_tokens`/`output_tokens`/`total_tokens`. Cached prompt tokens are in
    `prompt_tokens_details.cached_tokens` (`input_tokens_details` in the newer APIs), part of the prompt's count.
    """
    prompt = tokens(reported, "prompt_tokens") if "prompt_tokens" in reported else tokens(reported, "input_tokens")
    completion = (
        tokens(reported, "completion_tokens") if "completion_tokens" in reported else tokens(reported, "output_tokens")
    )
    total = tokens(reported, "total_tokens")
    if prompt is None and completion is None and total is None:
        return None
    cached = nested_tokens(reported, "prompt_tokens_details", "cached_tokens")
    if cached is None:
        cached = nested_tokens(reported, "input_tokens_details", "cached_tokens")
    return Usage(prompt, completion, total, cached_prompt=cached)  # OpenAI reports no cache writes


UNKNOWN = Dialect()
