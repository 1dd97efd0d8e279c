"""What the MongoDB stand-ins share: a mockupdb server on loopback, and TEST_MONGO_URI taken apart.

mockupdb speaks the wire protocol and answers the driver's handshake itself; every other command
goes to the stand-in's own responder, which returns False for what mockupdb should answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mockupdb import MockupDB

# mockupdb announces wire version 6 by default; current pymongo requires a newer server.
_HELLO = {"maxWireVersion": 21, "minWireVersion": 0, "ismaster": True, "isWritablePrimary": True}
HANDSHAKE = frozenset({"ismaster", "isMaster", "hello"})

Responder = Callable[[Any], bool]


class WireServer:
    """A stand-in's server: started on `port` (0: any free one), which it keeps across a stop and a start."""

    def __init__(self, respond: Responder, port: int = 0) -> None:
        self._respond = respond
        self._server: MockupDB | None = None
        self.port = port

    def start(self) -> None:
        self._server = MockupDB(port=self.port, auto_ismaster=_HELLO)
        self._server.autoresponds(self._respond)
        self.port = self._server.run()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def real_mongo_uri() -> str | None:
    return os.environ.get("TEST_MONGO_URI") or None


def hosts_and_options(uri: str) -> tuple[str, str]:
    """`mongodb://hosts` and the options of a URI, its database left out: tests name their own databases."""
    head, _, options = uri.partition("?")
    hosts = head.rstrip("/") if head.count("/") == 2 else head.rsplit("/", 1)[0]
    return hosts, options
