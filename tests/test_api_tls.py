"""TLS: verified by default, a private CA via ca_bundle, and an explicit insecure mode."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sshkit.api.client import BackendClient
from sshkit.credentials import StoredLogin, write_login
from sshkit.errors import ExitCode, NetworkError
from sshkit.settings import Connection, resolve_settings
from tests.relay_fakes import hashed_ca_dir, self_signed_cert


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


def _login(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sshkit",
            "login",
            "--endpoint",
            url,
            "--username",
            "u@x",
            "--password-stdin",
            *flags,
        ],
        input="new-password",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_login_never_inherits_insecure_from_the_stored_login(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 item 2: an old --insecure login must not make the next login skip TLS."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url, _ = tls_server
    write_login(
        "default",
        StoredLogin(endpoint=url, endpoint_type="session", session_id="S", verify_tls=False),
    )
    proc = _login(url)
    assert proc.returncode == ExitCode.NETWORK, proc.stderr
    assert "TLS verification" in proc.stderr
    # The stored login still works for other commands: it is only `login` that re-decides.
    assert not resolve_settings().verify_tls


def test_no_insecure_overrides_the_environment(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("SSHKIT_INSECURE", "1")
    url, _ = tls_server
    proc = _login(url, "--no-insecure")
    assert proc.returncode == ExitCode.NETWORK, proc.stderr
    assert "TLS verification" in proc.stderr


def test_a_ca_directory_is_trusted(
    tls_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--ca-bundle DIR`: requests verifies against a directory of OpenSSL hash links."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (scripts/_setup.sh)")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url, cert = tls_server
    (tmp_path / "other").mkdir()
    other = self_signed_cert(tmp_path / "other", "other.example")[0]
    info = BackendClient(conn(url, ca=str(hashed_ca_dir(tmp_path / "yes", other, cert)))).probe()
    assert info.manager_version == "24.09.14"
    with pytest.raises(NetworkError, match="TLS verification of https://127") as refused:
        BackendClient(conn(url, ca=str(hashed_ca_dir(tmp_path / "no", other)))).probe()
    assert "--ca-bundle FILE (or DIRECTORY)" in (refused.value.hint or "")
