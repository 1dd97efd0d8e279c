"""The upstream target: `PORTKEY_URL`'s path + the client's raw path and query, byte for byte, or nothing.

httpx normalises the URLs it builds: it resolves `.` and `..` segments (so `/v1/../../admin` under
`PORTKEY_URL=http://gw/portkey` would reach `http://gw/admin`) and percent-encodes characters a URI
may not hold. A target httpx would change is refused with 400 rather than sent changed. Dot
segments are refused in their percent-encoded spellings too (`%2e%2e`, `..%2f`): a server behind
Portkey may decode them before it resolves them.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote_to_bytes

import httpx

from ..errors import TARGET_NOT_A_PATH, TARGET_WOULD_CHANGE

_SEGMENT_SEPARATORS = re.compile(rb"[/\\]")
_DOT_SEGMENTS = frozenset({b".", b".."})
# PORTKEY_URL's path + an API path + a short query (Azure's `?api-version=...`) fit with room to spare.
_CACHED_TARGET_BYTES = 256


def upstream_url(base: httpx.URL, base_path: bytes, raw_path: bytes, query: bytes) -> httpx.URL:
    """`base` with `base_path + raw_path (+ ? + query)` as its target; refused when that cannot be sent unchanged."""
    if not raw_path.startswith(b"/"):
        raise TARGET_NOT_A_PATH.error()
    url = _url_if_unchanged(base, base_path + raw_path + (b"?" + query if query else b""))
    if url is None:
        raise TARGET_WOULD_CHANGE.error()
    return url


def has_dot_segment(raw_path: bytes) -> bool:
    """Whether a path holds a `.` or `..` segment, once percent-decoded, with `/` or `\\` between segments."""
    decoded = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    if b"." not in decoded:
        return False
    return any(segment in _DOT_SEGMENTS for segment in _SEGMENT_SEPARATORS.split(decoded))


def _url_if_unchanged(base: httpx.URL, target: bytes) -> httpx.URL | None:
    # LibreChat calls a handful of short paths; building an httpx.URL costs more than looking one up.
    # Longer targets are built each time: clients choose them, and cached they would hold up to
    # 1024 request heads' worth of memory.
    if len(target) <= _CACHED_TARGET_BYTES:
        return _cached_url_if_unchanged(base, target)
    return _build_url_if_unchanged(base, target)


@functools.lru_cache(maxsize=1024)
def _cached_url_if_unchanged(base: httpx.URL, target: bytes) -> httpx.URL | None:
    return _build_url_if_unchanged(base, target)


def _build_url_if_unchanged(base: httpx.URL, target: bytes) -> httpx.URL | None:
    path = target.partition(b"?")[0]
    if has_dot_segment(path):
        return None
    try:
        url = base.copy_with(raw_path=target)
    except (httpx.InvalidURL, UnicodeDecodeError):
        return None
    return url if url.raw_path == target else None
