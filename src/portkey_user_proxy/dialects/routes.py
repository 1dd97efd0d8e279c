"""Which route a request is, known by how its path ends: its class for metrics and its API family.

Paths end as `/v1/...` or `/openai/deployments/<d>/...` do; only the end says what the request is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .anthropic_messages import AnthropicMessages
from .chat_completions import ChatCompletions
from .dialect import UNKNOWN, Dialect
from .gemini import Gemini
from .openai_user import OpenAIUserField
from .responses import Responses


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the `route` label of every metric: one of ROUTE_CLASSES
    dialect: Dialect
    charged: bool = True  # its requests are checked against budgets before they go (listing models costs nothing)


_OPENAI_USER_FIELD = OpenAIUserField()
_GEMINI = Gemini()
# Checked in order: `/chat/completions` before the legacy `/completions` it ends with.
_ROUTES: tuple[tuple[str, Route], ...] = (
    ("/chat/completions", Route("chat_completions", ChatCompletions())),
    ("/completions", Route("completions", _OPENAI_USER_FIELD)),
    ("/embeddings", Route("embeddings", _OPENAI_USER_FIELD)),
    ("/responses", Route("responses", Responses())),
    ("/v1/messages", Route("messages", AnthropicMessages())),
    ("/moderations", Route("moderations", _OPENAI_USER_FIELD)),
    ("/images/generations", Route("images", _OPENAI_USER_FIELD)),
    ("/images/edits", Route("images", UNKNOWN)),  # multipart: the body is streamed through unread
    ("/audio/transcriptions", Route("audio", UNKNOWN)),
    ("/audio/speech", Route("audio", UNKNOWN)),
    (":generateContent", Route("gemini", _GEMINI)),
    (":streamGenerateContent", Route("gemini", _GEMINI)),
    ("/runs", Route("assistants", UNKNOWN)),  # Assistants: `/threads/runs`, `/threads/<id>/runs`
    ("/models", Route("models", UNKNOWN, charged=False)),
)
# The route label of a path no family serves, and of a refusal whose path the server never read whole.
OTHER_ROUTE = "other"
_OTHER = Route(OTHER_ROUTE, UNKNOWN)
ROUTE_CLASSES = tuple(dict.fromkeys([*(route.name for _, route in _ROUTES), OTHER_ROUTE]))

# A route depends on the path's last characters only: caching by them keeps the cache's memory
# bounded however long the paths clients send (a request head may hold 64 KiB of path).
_TAIL = max(len(ending) for ending, _ in _ROUTES)


def route_for(path: str) -> Route:
    return _route_of_tail(path[-_TAIL:])


def route_class(path: str) -> str:
    return route_for(path).name


def dialect_for(path: str) -> Dialect:
    return route_for(path).dialect


@functools.lru_cache(maxsize=1024)
def _route_of_tail(tail: str) -> Route:
    # Asked once per request, and for refusals, for a handful of distinct paths.
    for ending, route in _ROUTES:
        if tail.endswith(ending):
            return route
    return _OTHER
