"""Caches keyed by what clients send stay small however long the paths they send."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import httpx

from portkey_user_proxy.dialects import route_class
from portkey_user_proxy.inbound.target import upstream_url

# Long, distinct paths, as a client filling 64 KiB request heads could send them one after another.
PATHS = 200
LENGTH = 32 * 1024


def retained_bytes(use: Callable[[int], object]) -> int:
    """Memory still held after `use(n)` for every n, its results dropped."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(PATHS):
            use(n)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_route_classes_of_long_paths_keep_no_path() -> None:
    retained = retained_bytes(lambda n: route_class(f"/{n}/{'a' * LENGTH}/chat/completions"))

    assert retained < PATHS * LENGTH // 20


def test_route_classes_still_come_from_the_end_of_the_path() -> None:
    assert route_class("/" + "x" * LENGTH + "/v1/chat/completions") == "chat_completions"
    assert route_class("/v1/completions") == "completions"
    assert route_class("/v1/messages") == "messages"
    assert route_class("/v1/chat/completions/extra") == "other"


def test_upstream_urls_of_long_targets_keep_no_target() -> None:
    base = httpx.URL("http://gw/portkey")

    retained = retained_bytes(lambda n: upstream_url(base, b"/portkey", f"/v1/{n}/".encode() + b"a" * LENGTH, b""))

    assert retained < PATHS * LENGTH // 20


def test_long_targets_are_still_sent_unchanged() -> None:
    path = b"/v1/" + b"a" * LENGTH + b"/chat/completions"

    url = upstream_url(httpx.URL("http://gw/portkey"), b"/portkey", path, b"api-version=1")

    assert url.raw_path == b"/portkey" + path + b"?api-version=1"
