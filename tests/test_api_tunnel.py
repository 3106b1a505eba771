"""The tcpproxy websocket request in both endpoint modes."""

from __future__ import annotations

from datetime import UTC, datetime

from sshkit.api.auth import sign_headers
from sshkit.api.tunnel import tunnel_request
from sshkit.settings import Connection

NOW = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_conn(**kw: object) -> Connection:
    base: dict[str, object] = dict(
        endpoint="http://127.0.0.1:8090",
        endpoint_type="api",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        session_id=None,
        api_version="v7.20230615",
        verify_tls=True,
        ca_bundle=None,
        profile="default",
    )
    base.update(kw)
    return Connection(**base)  # type: ignore[arg-type]


def test_api_mode_matches_the_spec_vector() -> None:
    url, headers = tunnel_request(make_conn(), "mysess", now=NOW)
    assert url == "ws://127.0.0.1:8090/stream/session/mysess/tcpproxy?app=sshd"
    assert headers["Authorization"].endswith(
        ":dd501c7c7ec871fbcc5c7c40c21cae8d4bfb359657f4da96bcf57277a842c0fe"
    )
    assert headers["Date"] == "2024-01-02T03:04:05.678901+00:00"
    assert headers["X-BackendAI-Version"] == "v7.20230615"
    assert headers["X-BackendAI-Domain"] == "default"
    assert "Content-Type" not in headers
    assert "X-BackendAI-SessionID" not in headers


def test_session_mode_uses_func_prefix_and_session_header() -> None:
    conn = make_conn(
        endpoint="https://web.example.com/prefix",
        endpoint_type="session",
        access_key=None,
        secret_key=None,
        session_id="abc123",
        api_version="v8.20240915",
        domain="research",
    )
    url, headers = tunnel_request(conn, "my sess/x", app="ttyd", now=NOW)
    assert url == "wss://web.example.com/prefix/func/stream/session/my%20sess%2Fx/tcpproxy?app=ttyd"
    assert headers["X-BackendAI-SessionID"] == "abc123"
    assert headers["X-BackendAI-Version"] == "v8.20240915"
    assert headers["X-BackendAI-Domain"] == "research"
    assert "Authorization" not in headers


def test_api_mode_signs_the_path_prefix_and_default_version() -> None:
    conn = make_conn(endpoint="https://api.example.com:8443/base", api_version=None)
    url, headers = tunnel_request(conn, "s", now=NOW)
    assert url == "wss://api.example.com:8443/base/stream/session/s/tcpproxy?app=sshd"
    expected = sign_headers(
        "GET",
        "/base/stream/session/s/tcpproxy?app=sshd",
        date=NOW,
        hostname="api.example.com:8443",
        content_type="application/octet-stream",
        api_version="v7.20230615",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    assert headers["Authorization"] == expected["Authorization"]


def test_repr_hides_secrets() -> None:
    conn = make_conn(session_id="SESSION-SECRET")
    text = repr(conn)
    assert "wJalrXUtnFEMI" not in text and "SESSION-SECRET" not in text
    assert "AKIAIOSFODNN7EXAMPLE" in text
