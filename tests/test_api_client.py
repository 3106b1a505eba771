"""BackendClient over a fake transport: signing, routing, version fallbacks, error mapping."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sshkit.api.auth import sign_headers
from sshkit.api.client import BackendClient, default_download_styles
from sshkit.api.models import ServerInfo
from sshkit.errors import (
    AuthError,
    NetworkError,
    NotFoundError,
    RejectedError,
    ServerError,
    UnsafeDownloadError,
)
from sshkit.settings import Connection
from tests.api_fakes import Reply, fake_session, problem

NOW = datetime(2026, 11, 28, 17, 0, 0, 123456, tzinfo=UTC)
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SID = "0123456789abcdef0123456789abcdef"
KEY = b"-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"


def api_conn(**kw: Any) -> Connection:
    base: dict[str, Any] = dict(
        endpoint="http://127.0.0.1:8090",
        endpoint_type="api",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key=SECRET,
        session_id=None,
        api_version=None,
        verify_tls=True,
        ca_bundle=None,
        profile="default",
    )
    base.update(kw)
    return Connection(**base)


def session_conn(**kw: Any) -> Connection:
    base: dict[str, Any] = dict(
        endpoint="http://127.0.0.1:8000",
        endpoint_type="session",
        access_key=None,
        secret_key=None,
        session_id=SID,
    )
    return api_conn(**{**base, **kw})


def hello(version: str = "v8.20240915", manager: str = "24.09.14") -> Reply:
    return Reply(200, {"version": version, "manager": manager})


def multipart_key(data: bytes = KEY) -> Reply:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("id_container")
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    part = buf.getvalue()
    body = (
        b"--BOUND\r\nContent-Type: application/octet-stream\r\nContent-Encoding: identity\r\n\r\n"
        + part
        + b"\r\n--BOUND--\r\n"
    )
    return Reply(200, body, {"Content-Type": "multipart/mixed; boundary=BOUND"})


def test_api_mode_signs_what_it_sends() -> None:
    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/":
            assert "Authorization" not in req.headers
            return hello()
        return Reply(200, {"global_role": "user", "domain_role": "user"})

    http, adapter = fake_session(handler)
    client = BackendClient(api_conn(), http=http, clock=lambda: NOW)
    me = client.whoami()
    assert me.global_role == "user" and me.access_key == "AKIAIOSFODNN7EXAMPLE"
    req = adapter.requests[-1]
    assert req.method == "GET" and req.path_url == "/auth/role"
    assert req.headers["Content-Type"] == "text/plain"
    assert req.headers["X-BackendAI-Version"] == "v8.20240915"
    assert req.headers["Date"] == NOW.isoformat()
    expected = sign_headers(
        "GET",
        req.path_url,
        date=NOW,
        hostname="127.0.0.1:8090",
        content_type="text/plain",
        api_version="v8.20240915",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key=SECRET,
    )
    assert req.headers["Authorization"] == expected["Authorization"]
    assert "X-BackendAI-SessionID" not in req.headers


def test_version_is_negotiated_down_and_falls_back() -> None:
    assert ServerInfo("v10.20300101").negotiated_version == "v9.20250722"
    assert ServerInfo("v7.20230615").negotiated_version == "v7.20230615"

    def handler(req: requests.PreparedRequest) -> Reply:
        return Reply(404, b"no") if req.path_url == "/" else Reply(200, {})

    http, adapter = fake_session(handler)
    client = BackendClient(api_conn(api_version="v8.20240315"), http=http, clock=lambda: NOW)
    client.whoami()
    assert client.server.probed is False
    assert adapter.requests[-1].headers["X-BackendAI-Version"] == "v8.20240315"


def test_session_mode_routes_through_func_and_never_sends_cookies() -> None:
    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/func/":
            return hello()
        return Reply(200, {}, {"Set-Cookie": "AIOHTTP_SESSION=evil; Path=/"})

    http, adapter = fake_session(handler)
    client = BackendClient(session_conn(), http=http, clock=lambda: NOW)
    client.get_session("demo")
    client.get_session("demo")
    last = adapter.requests[-1]
    assert last.path_url == "/func/session/demo"
    assert last.headers["X-BackendAI-SessionID"] == SID
    assert "Authorization" not in last.headers
    assert "Cookie" not in last.headers
    assert len(http.cookies) == 0


def test_session_login_takes_the_session_id_header() -> None:
    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/func/":
            return hello()
        assert req.path_url == "/server/login"
        assert "X-BackendAI-SessionID" not in req.headers
        body = json.loads(req.body or b"{}")
        if body == {"username": "u@example.com", "password": "pw"}:
            return Reply(
                200,
                {"authenticated": True, "data": {"access_key": "AK1", "role": "user"}},
                {"X-BackendAI-SessionID": "newsid", "Set-Cookie": "AIOHTTP_SESSION=newsid"},
            )
        return Reply(
            200,
            {
                "authenticated": False,
                "data": {"type": "x", "title": "t", "details": "User credential mismatch."},
            },
        )

    http, _ = fake_session(handler)
    anon = session_conn(session_id=None)
    result = BackendClient(anon, http=http).login("u@example.com", "pw")
    assert (result.session_id, result.access_key, result.role) == ("newsid", "AK1", "user")
    assert "newsid" not in repr(result)
    with pytest.raises(AuthError, match="wrong user name or password") as info:
        BackendClient(anon, http=http).login("u@example.com", "s3cret-bad")
    assert "s3cret-bad" not in info.value.message
    assert info.value.msg == "User credential mismatch."
    assert info.value.hint and "SSO" in info.value.hint


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        (problem(401, "auth-failed", "Credential/signature mismatch.", "Signature mismatch"),
         AuthError, "HTTP 401 Credential/signature mismatch. (Signature mismatch)"),
        (problem(400, "invalid-auth-params", "Missing or invalid authorization parameters.",
                 "Date/time sync error"), AuthError, "Date/time sync error"),
        (problem(404, "object-not-found", "No such session.", "Session (id=x) does not exist."),
         NotFoundError, "No such session."),
        (problem(400, "invalid-api-params", "Missing or invalid API parameters."),
         RejectedError, "HTTP 400"),
        (problem(500, "internal-server-error", "Internal server error"), ServerError, "HTTP 500"),
        (Reply(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
         ServerError, "HTTP 502"),
    ],
)  # fmt: skip
def test_errors_are_mapped_with_title_and_msg(reply: Reply, error: type, text: str) -> None:
    http, _ = fake_session(lambda req: hello() if req.path_url == "/" else reply)
    with pytest.raises(error) as info:
        BackendClient(api_conn(), http=http, clock=lambda: NOW).get_session("x")
    assert text in info.value.message
    assert info.value.message.startswith("looking up session 'x' failed")
    assert "\n" not in info.value.message
    assert SECRET not in info.value.message
    if reply.status == 400 and "sync" in text:
        assert "clock" in (info.value.hint or "")


def test_connection_refused_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = api_conn(endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(NetworkError, match=f"cannot connect to http://127.0.0.1:{port}") as info:
        BackendClient(conn).get_session("x")
    assert "refused" in info.value.message.lower()


def test_tls_failure_is_a_network_error_with_a_hint() -> None:
    def handler(req: requests.PreparedRequest) -> Reply:
        raise requests.exceptions.SSLError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed"
            " certificate (_ssl.c:1000)"
        )

    http, _ = fake_session(handler)
    with pytest.raises(NetworkError, match="TLS verification of https://h failed") as info:
        BackendClient(api_conn(endpoint="https://h"), http=http).probe()
    assert "--ca-bundle" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("manager", "api", "first"),
    [
        ("23.09.10", "v7.20230615", "get-body"),
        ("24.03.6", "v8.20240315", "get-body"),
        ("24.03.7", "v8.20240315", "post-body"),
        ("24.09.14", "v8.20240915", "post-body"),
        ("26.3.0", "v9.20250722", "post-body"),
        ("26.4.6", "v9.20250722", "post-body"),
        ("26.4.7", "v9.20250722", "post-query"),
        ("26.8.1", "v9.20250722", "post-query"),
        (None, "v7.20230615", "get-body"),
        (None, "v9.20250722", "post-query"),
    ],
)
def test_download_style_by_version(manager: str | None, api: str, first: str) -> None:
    styles = default_download_styles(ServerInfo(api, manager))
    assert styles[0] == first and sorted(styles) == sorted(set(styles)) and len(styles) == 4


def _server_accepting(style: str, version: Reply) -> tuple[requests.Session, list[str]]:
    seen: list[str] = []

    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url in ("/", "/func/"):
            return version
        query = parse_qs(urlsplit(req.url or "").query)
        body = json.loads(req.body) if req.body else None
        got = f"{(req.method or '').lower()}-{'body' if body else 'query'}"
        seen.append(got)
        if got != style:
            if req.method == "GET" and style.startswith("post"):
                return problem(400, "deprecated", "This API is deprecated.")
            if req.method == "POST" and style.startswith("get"):
                return problem(405, "method-not-allowed", "HTTP Method Not Allowed.")
            return problem(400, "invalid-api-params", "Missing or invalid API parameters.")
        files = body["files"] if body else query["files"]
        assert files == ["id_container"]
        return multipart_key()

    http, _ = fake_session(handler)
    return http, seen


@pytest.mark.parametrize("style", ["get-body", "post-body", "post-query", "get-query"])
@pytest.mark.parametrize(
    "version",
    [hello("v7.20230615", "23.09.10"), hello(), hello("v9.20250722", "26.3.0"), Reply(500)],
)
def test_download_finds_the_servers_style(style: str, version: Reply) -> None:
    http, seen = _server_accepting(style, version)
    client = BackendClient(api_conn(), http=http, clock=lambda: NOW)
    assert client.download_session_file("demo", "id_container") == KEY
    assert seen[-1] == style and len(seen) <= 4


def test_download_native_style_needs_one_request() -> None:
    for style, version in [
        ("get-body", hello("v7.20230615", "23.09.10")),
        ("post-body", hello("v8.20240915", "24.09.14")),
        ("post-body", hello("v9.20250722", "26.3.0")),
        ("post-query", hello("v9.20250722", "26.8.1")),
    ]:
        http, seen = _server_accepting(style, version)
        BackendClient(session_conn(), http=http).download_session_file("demo", "id_container")
        assert seen == [style]


def test_download_missing_file_is_not_found() -> None:
    agent_error = problem(
        500,
        "kernel-execution-failed",
        "Executing user code in the kernel has failed.",
        **{"agent-details": {"exception": "FileNotFoundError('Could not found the file: x')"}},
    )
    http, _ = fake_session(lambda req: hello() if req.path_url == "/" else agent_error)
    with pytest.raises(NotFoundError, match="no such file in the session"):
        BackendClient(api_conn(), http=http, clock=lambda: NOW).download_session_file("s", "x")


def test_download_refuses_oversized_answers() -> None:
    big = Reply(200, b"x" * (3 * 1024 * 1024), {"Content-Type": "multipart/mixed; boundary=B"})
    http, _ = fake_session(lambda req: hello() if req.path_url == "/" else big)
    with pytest.raises(UnsafeDownloadError, match="larger than 1 MiB"):
        BackendClient(api_conn(), http=http, clock=lambda: NOW).download_session_file("s", "k")


def test_tus_upload_sends_no_credentials_to_the_storage_proxy() -> None:
    uploaded = bytearray()

    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/":
            return hello()
        if req.path_url.endswith("/request-upload"):
            uploaded.clear()
            return Reply(200, {"token": "T", "url": "http://127.0.0.1:9999/upload"})
        assert req.url and req.url.startswith("http://127.0.0.1:9999/upload?token=T")
        assert "Authorization" not in req.headers and "X-BackendAI-SessionID" not in req.headers
        assert req.headers["Upload-Offset"] == str(len(uploaded))
        uploaded.extend(req.body or b"")
        return Reply(204, b"", {"Upload-Offset": str(len(uploaded))})

    http, adapter = fake_session(handler)
    client = BackendClient(api_conn(), http=http, clock=lambda: NOW)
    client.upload_file(".ssh", "authorized_keys", b"ssh-ed25519 AAAA\n")
    assert bytes(uploaded) == b"ssh-ed25519 AAAA\n"
    client.upload_file(".ssh", "empty", b"")
    assert (
        adapter.requests[-1].method == "PATCH" and uploaded == b""
    )  # an empty file still gets its PATCH


def test_list_files_normalises_modes() -> None:
    listing = {"items": [{"name": "a", "mode": "644"}, {"name": "b", "mode": 33188}]}
    http, _ = fake_session(lambda req: hello() if req.path_url == "/" else Reply(200, listing))
    items = BackendClient(api_conn(), http=http, clock=lambda: NOW).list_files(".ssh")
    assert [i.mode for i in items] == [0o644, 0o644]


def test_redirects_are_not_followed() -> None:
    moved = Reply(302, b"", {"Location": "http://elsewhere.example/func/session/x"})
    http, adapter = fake_session(lambda req: hello() if req.path_url == "/func/" else moved)
    with pytest.raises(ServerError, match=r"redirects to http://elsewhere\.example") as info:
        BackendClient(session_conn(), http=http).get_session("x")
    assert "final URL" in (info.value.hint or "")
    assert all("elsewhere" not in (r.url or "") for r in adapter.requests)


def test_settings_repr_hides_secrets(hermetic_home: object) -> None:
    from sshkit.settings import resolve_settings

    env = {"BACKEND_ENDPOINT": "http://h", "BACKEND_SECRET_KEY": "s3cr3t-value"}
    assert "s3cr3t-value" not in repr(resolve_settings(environ=env))
