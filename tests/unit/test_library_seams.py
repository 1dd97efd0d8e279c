"""The one place each library's internals are reached into still finds what it relies on.

`inbound/server.py` drives uvicorn's request cycle from a subclass of its HTTP protocol. A uvicorn
release that renamed any of it would fail subtly (a connection never timed out, a request never
refused); this test fails loudly instead, naming what moved. The upstream side uses public httpx API
only: requests go to the transport directly (`upstream/client.py`).
"""

from __future__ import annotations

import importlib.metadata

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portkey_user_proxy.inbound.server import missing_uvicorn_internals


def test_the_installed_uvicorn_has_every_internal_the_server_protocol_uses() -> None:
    version = importlib.metadata.version("uvicorn")
    assert missing_uvicorn_internals() == [], (
        f"uvicorn {version} moved internals inbound/server.py relies on; "
        "pin uvicorn in pyproject.toml to a release it was tested with, or adapt the protocol"
    )


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (HttpToolsProtocol, "on_url", "HttpToolsProtocol.on_url()"),
        (HttpToolsProtocol, "send_400_response", "HttpToolsProtocol.send_400_response()"),
        (FlowControl, "pause_reading", "FlowControl.pause_reading()"),
    ],
)
def test_a_moved_internal_is_named(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, named: str) -> None:
    monkeypatch.delattr(owner, name)
    assert missing_uvicorn_internals() == [named]
