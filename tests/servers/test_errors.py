"""The proxy's own errors have one shape, whether sent through ASGI or written to the socket."""

from __future__ import annotations

import json

from portkey_user_proxy.errors import error_body


def test_the_error_body_is_openai_shaped() -> None:
    body = json.loads(error_body('a "quoted" message', "some_code"))

    assert body == {"error": {"message": 'a "quoted" message', "type": "portkey_user_proxy_error", "code": "some_code"}}
