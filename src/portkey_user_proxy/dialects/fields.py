"""The few top-level fields of a JSON request body that the proxy reads, without building the rest.

A body can be 64 MiB of messages, and parsing all of it into Python objects costs many times its
size and stalls the event loop for seconds. msgspec checks the whole document but skips every field
not named in `_Fields` without building it, and keeps the named ones as raw JSON; each of those is
decoded only when it is small. Python's own parser, which builds everything, is used only for JSON
that msgspec refuses (lone surrogate escapes, NaN), and only up to `FULL_PARSE_LIMIT`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .json_body import FULL_PARSE_LIMIT, exact_loads, parse_json_object

# A field longer than this is no user id and no option the proxy must understand.
_FIELD_LIMIT = 64 * 1024


class Opaque:
    """A field present but too long to decode: it names nobody and must not be overwritten."""

    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = Opaque()


class _Fields(msgspec.Struct):
    """Every field a dialect reads (see `dialects`); msgspec skips all others without building them."""

    user: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    safety_identifier: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    metadata: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    stream: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    stream_options: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    model: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # what budgets price the answer's usage by
    # The most output a request allows (chat completions, Anthropic; Responses): what budgets hold for it.
    max_tokens: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    max_completion_tokens: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    max_output_tokens: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_NAMES = _Fields.__struct_fields__
_DECODER = msgspec.json.Decoder(_Fields)


def json_fields(body: bytes) -> dict[str, Any] | None:
    """The body's fields the proxy reads, by name; None when the body is not a JSON object.

    A field too long to decode is there as `OPAQUE`, so that it is neither trusted nor replaced.
    """
    try:
        found = _DECODER.decode(body)
    except msgspec.ValidationError:
        return None  # JSON, but not an object
    except msgspec.DecodeError:
        return _fields_of_unusual_json(body)
    except RecursionError:
        # Nesting deeper than Python's stack, anywhere in the body: no parser here can read it.
        return None
    fields: dict[str, Any] = {}
    for name in _NAMES:
        raw = getattr(found, name)
        if raw is not msgspec.UNSET:
            fields[name] = _value(raw)
    return fields


def _value(raw: msgspec.Raw) -> object:
    if len(raw) > _FIELD_LIMIT:
        return OPAQUE
    data = bytes(raw)
    plain = _plain_value(data)
    if plain is not _NOT_PLAIN:
        return plain
    try:
        # Exactly: a user id sent as a 30-digit number must not come back rounded.
        return exact_loads(data)
    except ValueError:
        return OPAQUE


_NOT_PLAIN = object()
_LITERALS: dict[bytes, object] = {b"true": True, b"false": False, b"null": None}


def _plain_value(data: bytes) -> object:
    """The value of the commonest fields, a string without escapes or a literal, read without a parser;
    `_NOT_PLAIN` for anything else. msgspec has checked the JSON: a quoted value without a backslash
    is its UTF-8 text exactly."""
    if len(data) >= 2 and data[0] == 0x22 and data[-1] == 0x22 and b"\\" not in data:  # '"'
        try:
            return data[1:-1].decode("utf-8")
        except UnicodeDecodeError:
            return _NOT_PLAIN
    return _LITERALS.get(data, _NOT_PLAIN)


def _fields_of_unusual_json(body: bytes) -> dict[str, Any] | None:
    if len(body) > FULL_PARSE_LIMIT:
        return None
    parsed = parse_json_object(body)
    return None if parsed is None else {name: parsed[name] for name in _NAMES if name in parsed}
