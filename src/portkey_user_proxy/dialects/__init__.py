"""The API families whose requests the proxy attributes and whose responses it counts.

One module per family; the forwarder picks one per request from its path, once. A family added later
is one module, one line in `_FAMILIES`, and one in `body_fields._Fields` for each body field it reads
that no family read before. A path no family serves gets `UNKNOWN`: the user id from the header only,
the body untouched.
"""

from __future__ import annotations

from .anthropic_messages import AnthropicMessages
from .chat_completions import ChatCompletions
from .dialect import Dialect
from .openai_user import OpenAIUserField
from .responses import Responses

__all__ = ["UNKNOWN", "Dialect", "dialect_for"]

UNKNOWN = Dialect()
# Checked in order: `/chat/completions` before the legacy `/completions` it ends with.
_FAMILIES: tuple[Dialect, ...] = (ChatCompletions(), Responses(), AnthropicMessages(), OpenAIUserField())


def dialect_for(path: str) -> Dialect:
    """The family serving `path`, known by how the path ends."""
    for family in _FAMILIES:
        if path.endswith(family.path_endings):
            return family
    return UNKNOWN
