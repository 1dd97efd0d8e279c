"""Portkey's hosted API is HTTPS: the upstream client speaks TLS, verifies the certificate, streams."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.proxy import MakeProxy
from tests.support.scripted_upstream import ScriptedUpstream, forward_proxy
from tests.support.servers import ServerThread, Upstream

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command to make a certificate"
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_upstream(certificate: tuple[Path, Path]) -> Iterator[Upstream]:
    cert, key = certificate
    app = Upstream()
    server = ServerThread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
    app.url = server.url.replace("http://", "https://")
    yield app
    server.stop()


def test_requests_and_streams_reach_an_https_upstream(
    make_proxy: MakeProxy, tls_upstream: Upstream, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test certificate, as an admin would a CA
    proxy = make_proxy(portkey_url=tls_upstream.url)
    body = {"user": "6651f0c2a1b2c3d4e5f60718", "stream": True, "messages": []}

    plain = httpx.post(proxy.url + "/v1/chat/completions", json={**body, "stream": False})
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data:")]

    assert plain.status_code == 200
    assert events[-1] == "data: [DONE]"
    assert tls_upstream.last.metadata["_user"] == "timmanik@email.com"


def test_an_untrusted_certificate_is_refused_with_a_502(make_proxy: MakeProxy, tls_upstream: Upstream) -> None:
    proxy = make_proxy(portkey_url=tls_upstream.url)

    response = httpx.get(proxy.url + "/v1/models")

    assert response.status_code == 502
    assert tls_upstream.received == []


def test_an_https_upstream_is_reached_through_a_tunnel_of_the_https_proxy(
    make_proxy: MakeProxy, tls_upstream: Upstream, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_lines: list[bytes] = []
    forward = ScriptedUpstream(forward_proxy(request_lines)).start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", forward.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        proxy = make_proxy(portkey_url=tls_upstream.url)

        response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": "6651f0c2a1b2c3d4e5f60718"})
    finally:
        forward.stop()

    assert response.status_code == 200
    port = tls_upstream.url.rsplit(":", 1)[1]
    assert request_lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]  # TLS end to end, verified
    assert tls_upstream.last.metadata["_user"] == "timmanik@email.com"
