"""Token usage as upstream responses report it, read from the bytes while they pass to the client.

Every API family the proxy knows reports usage in objects under a `"usage"` key: once at the end of
a JSON response or a chat-completions stream, in `response.completed` for OpenAI Responses, and in
two parts for Anthropic streams (`message_start` and the last `message_delta`). `UsageScanner` finds
those objects in the byte stream as chunks go by, never holding one back and never parsing the rest
of the response; the last object is the answer's usage (Anthropic's parts are merged instead). The
dialect then says what its fields mean.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_KEY = b'"usage"'
_WHITESPACE = b" \t\r\n"
# A usage object is a few hundred bytes: decoded from the first window it fits in; one longer than
# the last is not what we are looking for.
_OBJECT_WINDOWS = (1024, 4096)
_OBJECT_WINDOW = _OBJECT_WINDOWS[-1]
# Beyond this, a token count is not one: an upstream fault, never something to add to a counter.
_MAX_TOKENS = 2**40
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one response under the proxy's labels; None where the upstream did not say."""

    prompt: int | None = None
    completion: int | None = None
    total: int | None = None
    # Of `prompt`, the tokens read from the provider's prompt cache, which cost less (budgets price them).
    cached_prompt: int | None = None
    # Of `prompt`, the tokens written to the prompt cache (Anthropic's `cache_creation_input_tokens`),
    # which cost more than plain input; metrics count them in `prompt` only.
    cache_write: int | None = None

    def counts(self) -> Iterator[tuple[str, int]]:
        """(kind, tokens) for each count known, kinds being the `kind` label's values."""
        for kind, count in (("prompt", self.prompt), ("completion", self.completion), ("total", self.total)):
            if count is not None:
                yield kind, count


def tokens(reported: Mapping[str, object], *names: str) -> int | None:
    """The sum of the named counts that `reported` holds as valid token counts; None when it holds none."""
    total: int | None = None
    for name in names:
        value = reported.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_TOKENS:
            total = (total or 0) + value
    return total


def nested_tokens(reported: Mapping[str, object], parent: str, name: str) -> int | None:
    """A count inside one of `reported`'s objects, e.g. `prompt_tokens_details.cached_tokens`."""
    details = reported.get(parent)
    return tokens(details, name) if isinstance(details, Mapping) else None


class UsageScanner:
    """Collects the `"usage"` objects of a response, fed chunk by chunk as they are relayed."""

    def __init__(self, key: bytes = _KEY, *, merges: bool = False) -> None:
        self._key = key  # the dialect's usage key, quoted as in JSON (`"usage"`, Gemini's `"usageMetadata"`)
        # Whether a later object adds to an earlier one (Anthropic reports in parts) or replaces it: the
        # last object is the answer's own usage, after any the answer echoes (a Responses answer repeats
        # the request's tools, whose schemas may have a property named `usage`).
        self._merges = merges
        self.reported: dict[str, object] = {}
        self.found = False
        self._pending = b""  # the end of the previous chunk: part of a key, or an unfinished object
        self._resume_at = 0  # where to search `_pending` from: past what was searched already

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk if self._pending else chunk
        position = self._resume_at
        key = self._key
        while (start := data.find(key, position)) != -1:
            position = start + len(key)
            if start > 0 and data[start - 1] == ord("\\"):
                continue  # `\"usage\"` is text inside a JSON string, e.g. a model's answer
            found = _object_after(data, position)
            if found is _INCOMPLETE:
                # The object continues in the next chunk: keep it (bounded), search on from its key.
                self._pending, self._resume_at = (data[start:], 0) if len(data) - start <= _OBJECT_WINDOW else (b"", 0)
                return
            if isinstance(found, dict):
                if self._merges:
                    self.reported.update(found)
                else:
                    self.reported = found
                self.found = True
        # A key may be split across chunks. The last len(key) bytes hold no whole key that was not
        # already seen, so the next search starts one byte in, keeping the byte before a key.
        self._pending = data[-len(key) :]
        self._resume_at = 1 if len(data) >= len(key) else 0


class _Incomplete:
    pass


_INCOMPLETE = _Incomplete()


def _object_after(data: bytes, index: int) -> object:
    """The JSON object that is the value of the key ending at `index`; `_INCOMPLETE` when it may continue."""
    index = _skip_whitespace(data, index)
    if index == len(data):
        return _INCOMPLETE
    if data[index] != ord(":"):
        return None  # "usage" was a value, not a key
    index = _skip_whitespace(data, index + 1)
    if index == len(data):
        return _INCOMPLETE
    if data[index] != ord("{"):
        return None  # `"usage": null` before the final chunk, or a string
    for size in _OBJECT_WINDOWS:
        try:
            value, _ = _DECODER.raw_decode(data[index : index + size].decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            if index + size >= len(data):
                return _INCOMPLETE  # it may end in the next chunk
            continue
        return value
    return None


def _skip_whitespace(data: bytes, index: int) -> int:
    while index < len(data) and data[index] in _WHITESPACE:
        index += 1
    return index
