"""Who sent a request: the LibreChat user id carried by a header or by a field of the JSON body.

LibreChat puts the user's MongoDB `_id` (24 hex characters) in the body field its API family has for
it (OpenAI's `user`, Anthropic's `metadata.user_id`: see `dialects`), and an admin may also send it
in a header through the `{{LIBRECHAT_USER_ID}}` placeholder. Some LibreChat code paths send such
placeholders unresolved, as literal text: those are recognised, never trusted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from ..observability.logs import loggable
from .placeholders import find_placeholder

__all__ = ["Identity", "IdentitySource", "find_placeholder", "identify"]

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
# What an API key or a token starts with: an auth scheme, a provider key's prefix, a JWT's header.
_CREDENTIAL = re.compile(r"(?:bearer|basic|digest|token|apikey)\s|(?:sk|pk|rk)[-_]|eyj", re.IGNORECASE)


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
    # The id in MongoDB's lowercase hex form, or None when it cannot be an ObjectId: decided once, here.
    object_id: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = self.raw
        object.__setattr__(self, "object_id", raw.lower() if raw is not None and _OBJECT_ID.fullmatch(raw) else None)

    def for_logs(self) -> str:
        """The raw id as a log line may show it: escaped, and never a value shaped like a credential.

        A client or a misconfigured librechat.yaml can put a key where the user id belongs.
        """
        if self.raw is None:
            return "-"
        if _CREDENTIAL.match(self.raw):
            return "(a value shaped like a credential, hidden)"
        return loggable(self.raw)


def identify(header_value: str | None, *body_values: object) -> Identity:
    """The best id the request offers: an ObjectId over anything else, the header's over the body's.

    `body_values` are the body's identity fields in the order its API family prefers them (OpenAI
    Responses: `user`, then `safety_identifier`). A header configured with another placeholder
    (`{{LIBRECHAT_USER_EMAIL}}`, say) must not hide a body field that MongoDB can resolve.
    """
    candidates = [_claim(header_value, IdentitySource.HEADER)]
    candidates += [_claim(value, IdentitySource.BODY) for value in body_values]
    leaked = next((c.unresolved_placeholder for c in candidates if c.unresolved_placeholder), None)
    for candidate in candidates:
        if candidate.object_id is not None:
            return Identity(candidate.raw, candidate.source, leaked)
    for candidate in candidates:
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
