"""The suite's warning filters: every warning fails a test, except the one leak pymongo is known for.

pymongo 4.20 leaves a socket unclosed when the task making a connection is cancelled before the
connection is made (under uvloop, while the address is resolved): the proxy cancels lookups at their
deadline and closes its client at shutdown, so this happened at random in unrelated tests, when the
garbage collector met the socket. The tests label pymongo's sockets (tests.support.driver_sockets)
and pyproject.toml lets the warnings of those alone pass.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvloop
from pymongo.pool_options import PoolOptions
from pymongo.pool_shared import _async_create_connection

from tests.support.servers import unused_port


@contextmanager
def _unraisable() -> Iterator[list[BaseException | None]]:
    """What is raised where nobody can catch it (a warning turned error in `__del__`), collected now."""
    seen: list[BaseException | None] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
    try:
        yield seen
        gc.collect()
    finally:
        sys.unraisablehook = hook


async def _connections_cancelled_while_made(port: int) -> None:
    for turns in range(1, 8):  # cancelled after 1, 2, ... loop turns: some land in the address lookup
        making = asyncio.ensure_future(_async_create_connection(("127.0.0.1", port), PoolOptions(connect_timeout=5)))
        for _ in range(turns):
            await asyncio.sleep(0)
        making.cancel()
        await asyncio.gather(making, return_exceptions=True)


def test_the_socket_pymongo_leaks_when_cancelled_is_tolerated() -> None:
    with _unraisable() as seen:
        uvloop.run(_connections_cancelled_while_made(unused_port()))

    assert seen == []


def test_a_socket_of_our_own_left_open_still_fails_the_test() -> None:
    with _unraisable() as seen:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        del sock

    assert [type(error) for error in seen] == [ResourceWarning]


def test_an_unconnected_socket_made_from_an_address_lookup_still_fails_the_test() -> None:
    # The shape of pymongo's leak, from other code.
    (family, kind, proto, _, _), *_ = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    with _unraisable() as seen:
        sock = socket.socket(family, kind, proto)
        del sock

    assert [type(error) for error in seen] == [ResourceWarning]


def test_a_connected_socket_left_open_still_fails_the_test() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with _unraisable() as seen:
            client = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
            accepted.close()
            del client

    assert [type(error) for error in seen] == [ResourceWarning]
