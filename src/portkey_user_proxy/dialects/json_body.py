"""JSON request bodies: read them without changing them, and ask a stream for its usage.

The client's bytes go upstream exactly as sent unless a family must add a field; then the field is
spliced in, or the body rebuilt only when it reads back exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

_INCLUDE_USAGE = b'"stream_options":{"include_usage":true},'
# Bodies up to this size may be parsed whole into Python objects (~10x the JSON); larger ones never.
FULL_PARSE_LIMIT = 4 * 1024 * 1024


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (the upstream will say why)."""
    try:
        parsed = loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def loads(raw: bytes) -> object:
    """The JSON value `raw` holds; ValueError when it holds none.

    orjson first; Python's parser for the valid JSON orjson refuses because it cannot hold it exactly
    (integers beyond 64 bits, 1e400, lone surrogate escapes). JSON is UTF-8 (RFC 8259 §8.1): Python
    would guess UTF-16 or UTF-32 from bytes, where the upstream sees no JSON.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return exact_loads(raw)


def exact_loads(raw: bytes) -> object:
    """Python's parser: every valid JSON value exactly (orjson reads integers beyond 64 bits as floats)."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except RecursionError:
        raise ValueError("JSON nested deeper than Python's stack") from None


def with_stream_usage(body: bytes, fields: Mapping[str, Any], *, insist: bool = False) -> bytes:
    """The body of a streaming chat completion, asking for the final usage chunk when it does not.

    OpenAI-style streams carry token usage only when asked, and Portkey needs it to cost the
    request. A client's explicit `include_usage: false` is respected, unless `insist`: an answer
    whose cost counts against a budget must report it (the extra usage chunk, with empty `choices`,
    is a normal part of OpenAI's protocol). `fields` holds at least the body's `stream` and
    `stream_options`; merging into an existing `stream_options` rewrites the whole body, which is
    done only up to `FULL_PARSE_LIMIT`.
    """
    if fields.get("stream") is not True:
        return body
    options = fields.get("stream_options")
    if "stream_options" not in fields:
        # Splice the field in after the opening brace: the client's bytes stay exactly as sent.
        brace = body.index(b"{") + 1
        return body[:brace] + _INCLUDE_USAGE + body[brace:]
    if options is None or (isinstance(options, dict) and _asks_again(options, insist)):
        document = _exact_json_object(body) if len(body) <= FULL_PARSE_LIMIT else None
        if document is None:
            return body  # too large or too unusual to rebuild: better no usage than a stalled proxy or a changed body
        merged = {**(options or {}), "include_usage": True}
        try:
            return orjson.dumps({**document, "stream_options": merged})
        except orjson.JSONEncodeError:
            return body  # a value orjson cannot write back exactly: better no usage than a changed body
    return body


def _asks_again(options: Mapping[str, Any], insist: bool) -> bool:
    """Whether `stream_options` must be rewritten to ask for usage: it does not say, or says no and `insist`."""
    if "include_usage" not in options:
        return True
    return insist and options["include_usage"] is not True


def _exact_json_object(body: bytes) -> dict[str, Any] | None:
    # Only what orjson reads it writes back as it was: Python's parser takes NaN and 1e400, which
    # would come back as `null`, turning a request the upstream refuses into one it runs.
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
