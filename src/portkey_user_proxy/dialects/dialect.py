"""What the proxy knows of one API family; the defaults are those of a path it does not know."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .usage import Usage


class Dialect:
    """A path the proxy does not know: identity from the header only, the body forwarded untouched.

    A family overrides what it knows: where its requests carry the user id, whether and how a
    streaming request asks for usage, and what the `usage` objects of its responses mean.
    """

    # Whether the proxy needs the JSON body at all; when not, it streams through unread.
    reads_body: ClassVar[bool] = False
    # Whether its responses report token usage worth scanning for (a file download may hold thousands).
    reports_usage: ClassVar[bool] = False

    def identity_fields(self, body: Mapping[str, Any]) -> tuple[object, ...]:
        """The body's values that may name the user, the family's preferred one first."""
        return ()

    def request_body(self, raw: bytes, body: Mapping[str, Any], *, stream_usage: bool) -> bytes:
        """The body to send upstream: `raw`, exactly as received, unless the family must add to it."""
        return raw

    def usage(self, reported: Mapping[str, object]) -> Usage | None:
        """The tokens that the response's merged `usage` fields report, when they report any."""
        return None


UNKNOWN = Dialect()
