"""Request bodies built to break a parser, sent through the real proxy: each is forwarded or refused
with the proxy's JSON error, never met with a crash, and never changed in a way the client did not ask.
"""

from __future__ import annotations

import httpx

from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"


def _post(
    url: str, body: bytes, content_type: str = "application/json", path: str = "/v1/embeddings"
) -> httpx.Response:
    # The upstream echoes requests to this path without parsing them.
    return httpx.post(url + path, content=body, headers={"content-type": content_type})


def test_a_body_nested_deeper_than_the_stack_is_forwarded_untouched(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy()
    body = b'{"user":"' + USER_ID.encode() + b'","input":' + b"[" * 5000 + b"]" * 5000 + b"}"

    response = _post(proxy.url, body)

    assert response.status_code == 200
    assert upstream.last.body == body
    assert upstream.last.metadata == {"_user": "unidentified"}  # unreadable here: never a guessed user


def test_a_utf16_body_is_not_read_as_json_nor_spliced_into(make_proxy: MakeProxy, upstream: Upstream) -> None:
    # JSON is UTF-8: the upstream reads no user from UTF-16, so neither may the proxy, nor add UTF-8 to it.
    proxy = make_proxy()
    body = f'{{"user":"{USER_ID}","stream":true}}'.encode("utf-16")

    response = _post(proxy.url, body, "application/json; charset=utf-16")

    assert response.status_code == 200
    assert upstream.last.body == body
    assert upstream.last.metadata == {"_user": "unidentified"}


def test_a_utf8_body_after_a_byte_order_mark_is_read_and_asks_for_usage(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = make_proxy()
    body = b'\xef\xbb\xbf{"user":"' + USER_ID.encode() + b'","stream":true}'

    response = _post(proxy.url, body, path="/v1/chat/completions")

    assert response.status_code == 200
    assert upstream.last.metadata == {"_user": "timmanik@email.com"}
    assert (
        upstream.last.body
        == b'\xef\xbb\xbf{"stream_options":{"include_usage":true},"user":"' + USER_ID.encode() + b'","stream":true}'
    )
