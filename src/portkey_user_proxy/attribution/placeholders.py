"""LibreChat's placeholders, as they look when LibreChat leaves them unfilled.

LibreChat fills `{{LIBRECHAT_USER_<FIELD>}}` (and the older `${USER_<FIELD>}`) in the headers it sends,
and `{{LIBRECHAT_BODY_<FIELD>}}` from the request. Some of its code paths (the agents API, title
generation in some versions) send them as literal text instead. Identity never trusts such text;
metadata fills the user placeholders from the user's record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Any LibreChat placeholder: a value holding one was never filled in.
_ANY = re.compile(r"\{\{\s*LIBRECHAT_[A-Z0-9_]+\s*\}\}|\$\{\s*USER_[A-Z0-9_]+\s*\}")
# The placeholders naming a field of the user's record; the field is group 1 or 2.
_USER_FIELD = re.compile(r"\{\{\s*LIBRECHAT_USER_([A-Z0-9_]+)\s*\}\}|\$\{\s*USER_([A-Z0-9_]+)\s*\}")


def find_placeholder(text: str) -> str | None:
    """The first unresolved LibreChat placeholder in `text`, if any."""
    match = _ANY.search(text)
    return match.group(0) if match else None


def fill_user_fields(text: str, fields: Mapping[str, str]) -> str:
    """`text` with each user placeholder replaced by that field of the user's record ("" when missing)."""
    return _USER_FIELD.sub(lambda match: fields.get(match.group(1) or match.group(2), ""), text)
