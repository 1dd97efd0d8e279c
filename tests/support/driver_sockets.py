"""pymongo's sockets, told apart from every other socket in the tests.

pymongo 4.20 leaves a socket unclosed when the task making a connection is cancelled before the
connection is handed over (upstream ticket PYTHON-5867): the proxy cancels lookups at their deadline
and closes its client at shutdown, so now and then a socket the driver dropped was found by the
garbage collector during some unrelated test, and its ResourceWarning failed that test. The sockets
pymongo's connection code makes are `DriverSocket`s here, and pyproject.toml's warning filters let
theirs alone pass; a socket the tests or the proxy leave open still fails the test.
"""

from __future__ import annotations

import socket
import types

from pymongo import pool_shared


class DriverSocket(socket.socket):
    __slots__ = ()


def label_driver_sockets() -> None:
    """From now on, the sockets pymongo's connection code makes in this process are `DriverSocket`s."""
    labelled = types.ModuleType("socket")
    labelled.__dict__.update(vars(socket))
    labelled.socket = DriverSocket  # type: ignore[attr-defined]
    pool_shared.socket = labelled  # type: ignore[attr-defined]
