"""Who sent a request: the LibreChat user id carried by a header or by the JSON body's `user`.

LibreChat puts the user's MongoDB `_id` (24 hex characters) in the OpenAI body field `user`, and an
admin may also send it in a header through the `{{LIBRECHAT_USER_ID}}` placeholder. Some LibreChat
code paths send such placeholders unresolved, as literal text: those are recognised, never trusted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_PLACEHOLDER = re.compile(r"\{\{\s*LIBRECHAT_[A-Z0-9_]+\s*\}\}|\$\{\s*USER_[A-Z0-9_]+\s*\}")


class IdentitySource(enum.StrEnum):
    HEADER = "header"
    BODY = "body"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Identity:
    """The raw id a request claims, where it came from, and whether MongoDB may be asked about it."""

    raw: str | None
    source: IdentitySource
    unresolved_placeholder: str | None = None  # a literal `{{...}}` LibreChat failed to fill

    @property
    def object_id(self) -> str | None:
        """The id in MongoDB's lowercase hex form, or None when it cannot be an ObjectId."""
        if self.raw is not None and _OBJECT_ID.fullmatch(self.raw):
            return self.raw.lower()
        return None


def find_placeholder(text: str) -> str | None:
    """The first unresolved LibreChat placeholder in `text`, if any."""
    match = _PLACEHOLDER.search(text)
    return match.group(0) if match else None


def identify(header_value: str | None, body_user: object) -> Identity:
    """The best id the request offers: an ObjectId over anything else, the header's over the body's.

    A header configured with another placeholder (`{{LIBRECHAT_USER_EMAIL}}`, say) must not hide a
    body `user` that MongoDB can resolve.
    """
    header = _claim(header_value, IdentitySource.HEADER)
    body = _claim(body_user, IdentitySource.BODY)
    leaked = header.unresolved_placeholder or body.unresolved_placeholder
    for candidate in (header, body):
        if candidate.object_id is not None:
            return Identity(candidate.raw, candidate.source, leaked)
    for candidate in (header, body):
        if candidate.raw is not None:
            return Identity(candidate.raw, candidate.source, leaked)
    return Identity(None, IdentitySource.NONE, leaked)


def _claim(value: object, source: IdentitySource) -> Identity:
    if not isinstance(value, str) or not value.strip():
        return Identity(None, source)
    value = value.strip()
    leaked = find_placeholder(value)
    if leaked is not None:
        return Identity(None, source, leaked)
    return Identity(value, source)
