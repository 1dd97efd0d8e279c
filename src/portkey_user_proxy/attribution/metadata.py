"""The `x-portkey-metadata` header sent upstream.

Portkey wants a JSON object of string values of at most 128 characters; `_user` fills its Users view.
The admin's keys are kept, LibreChat placeholders inside values are filled from the user's record,
and `_user` is always ours: whatever the request carried under that key is replaced. Keys the proxy
fills from LibreChat's data either defer to the request's own value, unless that is blank or a
placeholder LibreChat left unresolved, or are the proxy's alone, like `_user` (the team of a
resolved user, the tenant of a known user: see `teams.OwnedKeys`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..headers import MAX_LENGTH, clip, portkey_length, shorten
from .placeholders import fill_user_fields, find_placeholder


@dataclass(frozen=True, slots=True)
class Metadata:
    header: str  # compact JSON, ready to send
    problem: str | None = None  # why the incoming header was ignored or what it lacked, for the logs
    placeholders_filled: bool = False


def build_metadata(
    incoming: str | None,
    user_value: str | None,
    fields: Mapping[str, str],
    owned: Mapping[str, str | None] | None = None,
    imposed: Mapping[str, str | None] | None = None,
) -> Metadata:
    """Merge the request's metadata with the attributed user.

    `user_value` becomes `_user` (dropped when None); `fields` fill `{{LIBRECHAT_USER_<FIELD>}}` and
    `${USER_<FIELD>}` placeholders, unknown fields becoming "". `owned` maps keys the proxy fills
    to their value (None: the proxy has none, so an unresolved value under the key is dropped).
    `imposed` likewise, but the request's own value under those keys never stands.
    """
    admin, problem = _parse(incoming)
    merged: dict[str, str] = {}
    filled = False
    for key, value in admin.items():
        text = value if isinstance(value, str) else _value_as_text(value)
        replaced = fill_user_fields(text, fields)
        filled = filled or replaced != text
        merged[shorten(key)] = shorten(replaced)
    merged.pop("_user", None)
    if user_value is not None:
        merged["_user"] = shorten(user_value)
    for key, value in (owned or {}).items():
        _fill_owned(merged, key, value)
    for key, value in (imposed or {}).items():
        merged.pop(key, None)
        _fill_owned(merged, key, value)
    return Metadata(_compact(merged), problem, filled)


# The inputs a header is built from once a user's record plays no part in it (no placeholder filled).
MetadataKey = tuple[str | None, str | None, str | None, str | None, bool, bool]


class BuiltHeaders:
    """Headers already built, for the same client header and the same user: LibreChat sends one
    user's requests with the same `x-portkey-metadata`, so most requests find theirs here.

    Bounded: past `size` entries the oldest goes first. Only a header in which no placeholder was
    filled, and none is left, is kept: the user's record fields then play no part in it.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._built: dict[MetadataKey, tuple[Metadata, bytes]] = {}

    def get(self, key: MetadataKey) -> tuple[Metadata, bytes] | None:
        return self._built.get(key)

    def keep(self, key: MetadataKey, metadata: Metadata) -> bytes:
        """The header's bytes; remembered for `key` when the user's record fields had no part in it."""
        encoded = metadata.header.encode("ascii")
        if not metadata.placeholders_filled and find_placeholder(metadata.header) is None:
            if len(self._built) >= self._size:
                del self._built[next(iter(self._built))]
            self._built[key] = (metadata, encoded)
        return encoded


def _fill_owned(merged: dict[str, str], key: str, value: str | None) -> None:
    carried = merged.get(key)
    if carried is not None and carried.strip() and find_placeholder(carried) is None:
        return  # the admin's own value, set in librechat.yaml, wins
    if value is not None and value.strip():
        merged[key] = shorten(value)
    else:
        merged.pop(key, None)  # a placeholder is no team: send none rather than a literal `{{...}}`


def _parse(incoming: str | None) -> tuple[dict[str, object], str | None]:
    if incoming is None or not incoming.strip():
        return {}, None
    try:
        parsed = json.loads(incoming)
    except (ValueError, RecursionError):
        return {}, "x-portkey-metadata is not valid JSON; replaced"
    if not isinstance(parsed, dict):
        return {}, "x-portkey-metadata is not a JSON object; replaced"
    return parsed, None


def _value_as_text(value: object) -> str:
    # Portkey takes strings only; numbers, booleans and nested JSON keep their JSON spelling.
    try:
        return _compact(value)
    except (ValueError, RecursionError):
        return ""


def _compact(value: object) -> str:
    # ASCII-only output: header values must not depend on how a peer decodes non-ASCII bytes.
    return json.dumps(value, separators=(",", ":"))


__all__ = [
    "MAX_LENGTH",
    "BuiltHeaders",
    "Metadata",
    "MetadataKey",
    "build_metadata",
    "clip",
    "portkey_length",
    "shorten",
]
