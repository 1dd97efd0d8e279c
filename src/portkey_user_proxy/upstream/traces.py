"""Conversation traces: one Portkey trace id for all the calls of one LibreChat conversation.

librechat.yaml fills a header with `"{{LIBRECHAT_BODY_CONVERSATIONID}}"` (`CONVERSATION_ID_HEADER`,
by default `x-librechat-conversation-id`); the proxy sends its value as `x-portkey-trace-id` when the
request has no trace id of its own, so Portkey groups a conversation's chat, title and tool calls. The
conversation header itself is the proxy's and is not forwarded.
"""

from __future__ import annotations

import re

from ..headers import TRACE_ID, RawHeaders

# Visible ASCII without spaces: LibreChat's conversation ids are UUIDs; anything else is not one.
_TRACEABLE = re.compile(rb"[\x21-\x7e]{1,128}")
# What LibreChat sends before a conversation has an id, or a placeholder it left unresolved.
_NOT_AN_ID = re.compile(rb"new|null|undefined|.*\{\{.*\}\}.*", re.IGNORECASE)


class ConversationTrace:
    def __init__(self, header: str) -> None:
        self._header = header.encode("ascii")

    def apply(self, outgoing: RawHeaders) -> RawHeaders:
        """`outgoing` without the conversation header, and with a trace id taken from it if it had none."""
        if not any(name == self._header for name, _ in outgoing):
            return outgoing  # the common case, found without building a new list
        conversation: bytes | None = None
        has_trace = False
        kept: RawHeaders = []
        for name, value in outgoing:
            if name == self._header:
                conversation = value.strip()
            elif name != TRACE_ID or value.strip():  # a blank trace id is no trace id
                has_trace = has_trace or name == TRACE_ID
                kept.append((name, value))
        if conversation is None:
            return outgoing
        if not has_trace and is_traceable(conversation):
            kept.append((TRACE_ID, conversation))
        return kept


def is_traceable(conversation: bytes) -> bool:
    """Whether a conversation header's value can serve as a Portkey trace id."""
    return bool(_TRACEABLE.fullmatch(conversation)) and not _NOT_AN_ID.fullmatch(conversation)
