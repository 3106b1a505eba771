"""TLS: verified by default, a private CA via ca_bundle, and an explicit insecure mode."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sshkit.api.client import BackendClient
from sshkit.errors import NetworkError
from sshkit.settings import Connection
from tests.relay_fakes import self_signed_cert


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"version": "v8.20240915", "manager": "24.09.14"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert_path, key_path = self_signed_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path
    finally:
        server.shutdown()
        server.server_close()


def conn(endpoint: str, *, verify: bool = True, ca: str | None = None) -> Connection:
    return Connection(
        endpoint=endpoint,
        endpoint_type="api",
        access_key="AK",
        secret_key="SK",
        session_id=None,
        api_version=None,
        verify_tls=verify,
        ca_bundle=ca,
        profile="default",
    )


def test_unknown_ca_is_refused_by_default(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url, _ = tls_server
    with pytest.raises(NetworkError, match=r"TLS verification of https://127\.0\.0\.1") as info:
        BackendClient(conn(url)).probe()
    assert "--ca-bundle" in (info.value.hint or "")


def test_ca_bundle_is_trusted(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    info = BackendClient(conn(url, ca=str(cert))).probe()
    assert info.manager_version == "24.09.14"


def test_insecure_skips_verification_without_warnings(tls_server: tuple[str, Path]) -> None:
    url, _ = tls_server
    # pytest turns warnings into errors: urllib3's InsecureRequestWarning would fail this.
    info = BackendClient(conn(url, verify=False)).probe()
    assert info.api_version == "v8.20240915"
