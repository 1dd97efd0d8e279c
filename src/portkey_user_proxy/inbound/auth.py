"""The proxy's own API key: who may send requests through it.

With `PROXY_API_KEY` set, a request must carry `Authorization: Bearer <key>`, which is how LibreChat
sends a custom endpoint's `apiKey`. The header is then the proxy's own: it is checked before the
body is read or a user looked up, compared in constant time, and never forwarded.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import INVALID_API_KEY, ProxyError, send_error
from ..headers import RawHeaders

AUTHORIZATION = b"authorization"
_BEARER = b"bearer"


class InboundKey:
    def __init__(self, key: str) -> None:
        self._key = key.encode("ascii")

    def admit(self, raw: RawHeaders) -> RawHeaders:
        """The request's headers without `Authorization`; a 401 unless it carries the key, once."""
        kept: RawHeaders = []
        presented: list[bytes] = []
        for name, value in raw:
            if name == AUTHORIZATION:
                presented.append(value)
            else:
                kept.append((name, value))
        if len(presented) != 1 or not self.matches(presented[0]):
            raise _unauthorized(missing=not presented)
        return kept

    def matches(self, authorization: bytes) -> bool:
        scheme, _, token = authorization.strip().partition(b" ")
        # compare_digest runs in time independent of where the values differ.
        return hmac.compare_digest(token.strip(), self._key) and scheme.lower() == _BEARER


class RequireInboundKey:
    """ASGI middleware asking for the key on some of the proxy's own paths (`/metrics`)."""

    def __init__(self, app: ASGIApp, *, key: InboundKey, paths: frozenset[str]) -> None:
        self._app = app
        self._key = key
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self._paths:
            try:
                self._key.admit(scope["headers"])
            except ProxyError as error:
                await send_error(send, error)
                return
        await self._app(scope, receive, send)


def _unauthorized(*, missing: bool) -> ProxyError:
    return INVALID_API_KEY.error(problem="no API key was sent" if missing else "the API key is not this proxy's")
