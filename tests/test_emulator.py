"""The emulator on its own: signing (spec §3), session-mode login (§2), versions, downloads (§5),
session info and apps (§8), error bodies (§9) and the test hooks."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from tests.emulator.auth import compute_signature, verify_signed_request
from tests.emulator.problems import ProblemError
from tests.emulator.testclient import BaiClient, sign
from tests.emulator_fixture import Emulator, EmulatorFactory

PROBS = "https://api.backend.ai/probs/"

# Spec §3.4.
VECTOR_AK = "AKIAIOSFODNN7EXAMPLE"
VECTOR_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
VECTOR_DATE = "2024-01-02T03:04:05.678901+00:00"
VECTORS = [
    (
        "GET",
        "127.0.0.1:8090",
        "/session/mysess/download",
        "application/json",
        "v7.20230615",
        "0d037886d62d0debcc9cd927f459a3d2327963ea9bd135c9b4ad89e8c9c5e7bd",
    ),
    (
        "GET",
        "127.0.0.1:8090",
        "/stream/session/mysess/tcpproxy?app=sshd",
        "application/octet-stream",
        "v7.20230615",
        "dd501c7c7ec871fbcc5c7c40c21cae8d4bfb359657f4da96bcf57277a842c0fe",
    ),
    (
        "POST",
        "api.example.com",
        "/folders",
        "application/json",
        "v8.20240915",
        "879efef6f569c9ea6a5d79777f64f06dd5d4c365243c1eafc0e88729e716a915",
    ),
]


def api_client(emu: Emulator, *, api_version: str = "v7.20230615") -> BaiClient:
    return BaiClient(
        emu.manager_url,
        mode="api",
        access_key=emu.access_key,
        secret_key=emu.secret_key,
        api_version=api_version,
    )


def session_client(emu: Emulator, *, use_cookie: bool = False) -> BaiClient:
    client = BaiClient(emu.webserver_url, mode="session", use_cookie=use_cookie)
    resp = client.login(emu.username, emu.password)
    assert resp.status_code == 200 and resp.json()["authenticated"] is True
    return client


def problem(resp: object) -> dict[str, object]:
    import requests

    assert isinstance(resp, requests.Response)
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.text
    body = resp.json()
    assert isinstance(body, dict)
    # 25.8+ add `error_code` (pinned per version in test_emulator_releases.py).
    code = body.pop("error_code", None)
    assert code is None or isinstance(code, str)
    return body


# --- §3.4 vectors, unit level ---


@pytest.mark.parametrize(("method", "host", "rel", "ctype", "version", "expected"), VECTORS)
def test_signature_vectors(
    method: str, host: str, rel: str, ctype: str, version: str, expected: str
) -> None:
    date = datetime.fromisoformat(VECTOR_DATE)
    got = compute_signature(
        VECTOR_SK,
        method=method,
        rel_url=rel,
        date_header=VECTOR_DATE,
        date=date,
        host=host,
        content_type=ctype,
        api_version=version,
    )
    assert got == expected
    # The independent test-side signer agrees.
    headers = sign(
        secret_key=VECTOR_SK,
        access_key=VECTOR_AK,
        method=method,
        rel_url=rel,
        date=date,
        hostname=host,
        content_type=ctype,
        api_version=version,
    )
    assert headers["Authorization"].endswith(f"credential={VECTOR_AK}:{expected}")
    # And the verifier accepts the vector as a request (clock pinned to the vector's date).
    access_key = verify_signed_request(
        method=method,
        raw_path=rel,
        headers={
            "Date": VECTOR_DATE,
            "Authorization": headers["Authorization"],
            "X-BackendAI-Version": version,
        },
        host=host,
        content_type=ctype,
        secrets_by_access_key={VECTOR_AK: VECTOR_SK},
        now=date + timedelta(minutes=3),
    )
    assert access_key == VECTOR_AK


def _verify(headers: dict[str, str], *, now_offset: timedelta = timedelta(0)) -> str:
    return verify_signed_request(
        method="GET",
        raw_path="/session/mysess/download",
        headers=headers,
        host="127.0.0.1:8090",
        content_type="application/json",
        secrets_by_access_key={VECTOR_AK: VECTOR_SK},
        now=datetime.fromisoformat(VECTOR_DATE) + now_offset,
    )


def test_verifier_rejections() -> None:
    good = f"BackendAI signMethod=HMAC-SHA256, credential={VECTOR_AK}:{VECTORS[0][5]}"
    base = {"Date": VECTOR_DATE, "X-BackendAI-Version": "v7.20230615"}
    cases: list[tuple[dict[str, str], timedelta, int, str]] = [
        # The date is checked before the Authorization header is looked at.
        ({**base}, timedelta(minutes=16), 400, "Date/time sync error"),
        ({**base, "Authorization": good}, timedelta(minutes=-16), 400, "Date/time sync error"),
        (
            {"X-BackendAI-Version": "v7.20230615", "Authorization": good},
            timedelta(0),
            400,
            "Date/time sync error",
        ),
        ({**base}, timedelta(0), 401, "Unauthorized access"),
        ({**base, "Authorization": "BackendAI nonsense"}, timedelta(0), 400, ""),
        (
            {**base, "Authorization": good.replace(VECTOR_AK, "AKIAUNKNOWN0000000000")},
            timedelta(0),
            401,
            "Access key not found",
        ),
        (
            {**base, "Authorization": good[:-1] + ("0" if good[-1] != "0" else "1")},
            timedelta(0),
            401,
            "Signature mismatch",
        ),
    ]
    assert _verify({**base, "Authorization": good}) == VECTOR_AK
    for headers, offset, status, msg in cases:
        with pytest.raises(ProblemError) as info:
            _verify(headers, now_offset=offset)
        assert info.value.status == status, headers
        if msg:
            assert info.value.msg == msg


# --- signed requests against a running emulator ---


def test_version_probe_per_server_version(emulator_factory: EmulatorFactory) -> None:
    import requests

    expected = {"23.09": "v7.20230615", "24.09": "v8.20240915", "26.3": "v9.20250722"}
    for version, api_version in expected.items():
        emu = emulator_factory(server_version=version)
        assert emu.info["api_version"] == api_version
        for url in (emu.manager_url + "/", emu.webserver_url + "/func/"):
            resp = requests.get(url, timeout=10)
            assert resp.status_code == 200
            assert resp.json()["version"] == api_version


def test_signed_requests(emulator: Emulator) -> None:
    client = api_client(emulator)
    resp = client.request("GET", f"/session/{emulator.session}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "RUNNING"

    wrong = client.request("GET", f"/session/{emulator.session}", secret_key="x" * 40)
    assert wrong.status_code == 401
    assert problem(wrong) == {
        "type": PROBS + "auth-failed",
        "title": "Credential/signature mismatch.",
        "msg": "Signature mismatch",
    }

    skewed = client.request(
        "GET", f"/session/{emulator.session}", date=datetime.now(UTC) - timedelta(minutes=20)
    )
    assert skewed.status_code == 400
    assert problem(skewed)["type"] == PROBS + "invalid-auth-params"
    assert problem(skewed)["msg"] == "Date/time sync error"

    other = BaiClient(emulator.manager_url, access_key="AKIANOTKNOWN00000000", secret_key="s")
    unknown = other.request("GET", f"/session/{emulator.session}")
    assert unknown.status_code == 401 and problem(unknown)["msg"] == "Access key not found"

    import requests

    unsigned = requests.get(
        f"{emulator.manager_url}/session/{emulator.session}",
        timeout=10,
        headers={"Date": datetime.now(UTC).isoformat()},
    )
    assert unsigned.status_code == 401 and problem(unsigned)["msg"] == "Unauthorized access"

    bad_version = api_client(emulator, api_version="v99.20990101")
    resp = bad_version.request("GET", f"/session/{emulator.session}")
    assert resp.status_code == 400 and problem(resp)["msg"] == "Unsupported API version."


def test_unknown_url_and_method(emulator: Emulator) -> None:
    client = api_client(emulator)
    resp = client.request("GET", "/no/such/path")
    assert resp.status_code == 404 and problem(resp)["type"] == PROBS + "url-not-found"
    resp = client.request("PUT", f"/session/{emulator.session}")
    assert resp.status_code == 405 and problem(resp)["type"] == PROBS + "method-not-allowed"
    assert "GET" in resp.headers["Allow"]


# --- session mode ---


def test_session_login_good_and_bad(emulator: Emulator) -> None:
    import requests

    anon = BaiClient(emulator.webserver_url, mode="session")
    resp = anon.request("GET", f"/session/{emulator.session}")
    assert resp.status_code == 401
    assert problem(resp) == {"type": PROBS + "auth-failed", "title": "Unauthorized access"}

    bad = anon.login(emulator.username, "wrong-password")
    # 26.8 passes the manager's 401 on (26.3 and older: 200, see test_emulator_releases.py).
    assert bad.status_code == 401
    assert bad.json()["authenticated"] is False
    assert bad.json()["data"]["details"] == "User credential mismatch."
    assert "AIOHTTP_SESSION" not in bad.cookies

    missing = requests.post(
        emulator.webserver_url + "/server/login", json={"username": "u"}, timeout=10
    )
    assert missing.status_code == 400 and problem(missing)["type"] == PROBS + "invalid-api-params"

    # Header mode.
    client = session_client(emulator)
    assert client.session_id and len(client.session_id) == 32
    resp = client.request("GET", f"/session/{emulator.session}")
    assert resp.status_code == 200 and resp.json()["status"] == "RUNNING"
    again = client.http.post(
        emulator.webserver_url + "/server/login",
        headers={"X-BackendAI-SessionID": client.session_id},
        json={"username": emulator.username, "password": emulator.password},
        timeout=10,
    )
    assert again.status_code == 400
    assert problem(again)["title"] == "You have already logged in."

    # Cookie mode, with the cookie's attributes as the webserver sets them.
    cookie_client = session_client(emulator, use_cookie=True)
    raw = cookie_client.http.post  # keep a reference; the cookie jar holds the session
    assert cookie_client.http.cookies.get("AIOHTTP_SESSION") == cookie_client.session_id
    resp = cookie_client.request("GET", f"/stream/session/{emulator.session}/apps")
    assert resp.status_code == 200
    assert {"name": "sshd", "protocol": "tcp", "ports": [2200]} in resp.json()
    del raw

    logout = client.http.post(
        emulator.webserver_url + "/server/logout",
        headers={"X-BackendAI-SessionID": client.session_id},
        timeout=10,
    )
    assert logout.status_code == 200  # 201 before 25.19.2
    assert client.request("GET", f"/session/{emulator.session}").status_code == 401
    # The other login session is unaffected.
    assert cookie_client.request("GET", f"/session/{emulator.session}").status_code == 200


def test_login_cookie_attributes(emulator: Emulator) -> None:
    import requests

    resp = requests.post(
        emulator.webserver_url + "/server/login",
        json={"username": emulator.username, "password": emulator.password},
        timeout=10,
    )
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("AIOHTTP_SESSION=" + resp.headers["X-BackendAI-SessionID"])
    for attr in ("HttpOnly", "Max-Age=604800", "Path=/", "expires="):
        assert attr in cookie
    assert resp.json()["data"]["access_key"] == emulator.access_key


# --- downloads per server version (spec §5.5) ---


def _tar_member(body: bytes, content_type: str) -> tuple[tarfile.TarInfo, bytes]:
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = list(msg.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part["Content-Type"] == "application/octet-stream"
    assert part["Content-Encoding"] == "identity"
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert int(part["Content-Length"]) == len(payload)
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        (member,) = tar.getmembers()
        data = tar.extractfile(member)
        assert data is not None
        return member, data.read()


def _check_key_download(resp: object) -> None:
    import requests

    assert isinstance(resp, requests.Response)
    assert resp.status_code == 200, resp.text
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    member, data = _tar_member(resp.content, ctype)
    assert member.name == "id_container"
    assert member.mode == 0o600
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n") and data.endswith(b"\n")


def test_download_23_09(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(server_version="23.09")
    client = api_client(emu)
    path = f"/session/{emu.session}/download"
    _check_key_download(client.request("GET", path, json_body={"files": ["id_container"]}))
    _check_key_download(client.request("GET", path, params={"files": "id_container"}))
    _check_key_download(
        session_client(emu).request("GET", path, json_body={"files": ["/home/work/id_container"]})
    )
    post = client.request("POST", path, params={"files": "id_container"})
    assert post.status_code == 405


def test_download_24_09(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(server_version="24.09")
    client = api_client(emu)
    path = f"/session/{emu.session}/download"
    _check_key_download(client.request("POST", path, json_body={"files": ["id_container"]}))
    _check_key_download(client.request("POST", path, params={"files": "id_container"}))
    get = client.request("GET", path, json_body={"files": ["id_container"]})
    assert get.status_code == 400
    assert problem(get)["type"] == PROBS + "deprecated"


def test_download_26_8(emulator: Emulator) -> None:
    client = api_client(emulator)
    path = f"/session/{emulator.session}/download"
    _check_key_download(client.request("POST", path, params={"files": "id_container"}))
    _check_key_download(
        session_client(emulator).request("POST", path, params={"files": "id_container"})
    )
    body_only = client.request("POST", path, json_body={"files": ["id_container"]})
    assert body_only.status_code == 400
    assert problem(body_only)["type"] == PROBS + "invalid-api-params"
    get = client.request("GET", path, params={"files": "id_container"})
    assert get.status_code == 405


@pytest.mark.parametrize("version", ["24.09", "26.8"])
def test_download_errors_and_single(emulator_factory: EmulatorFactory, version: str) -> None:
    emulator = emulator_factory(server_version=version)
    client = api_client(emulator)
    verb = "POST"
    resp = client.request("POST", "/session/nope/download", params={"files": "id_container"})
    assert resp.status_code == 404
    assert problem(resp) == {
        "type": PROBS + "object-not-found",
        "title": "No such session.",
        "msg": "Session (id=nope) does not exist.",
    }
    resp = client.request(
        verb, f"/session/{emulator.session}/download", params={"files": "missing.txt"}
    )
    assert resp.status_code == 500
    body = problem(resp)
    if version == "26.8":
        # From 26.1 the agent's RPC error is not converted: a bare 500 (spec §14).
        assert body["type"] == PROBS + "internal-server-error"
        assert "agent-details" not in body
    else:
        assert body["type"] == PROBS + "kernel-execution-failed"
        details = body["agent-details"]
        assert isinstance(details, dict)
        assert "FileNotFoundError" in str(details["exception"])
        assert "/home/work/missing.txt" in str(details["exception"])
    resp = client.request(
        verb, f"/session/{emulator.session}/download", params={"files": "../../etc/passwd"}
    )
    assert resp.status_code == 500

    single = client.request(
        verb,
        f"/session/{emulator.session}/download_single",
        params={"file": "/home/work/id_container"},
    )
    assert single.status_code == 200
    assert single.content.startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_session_info_and_apps(emulator: Emulator) -> None:
    client = api_client(emulator)
    info = client.request("GET", f"/session/{emulator.session}").json()
    for key in (
        "domainName",
        "groupId",
        "userId",
        "image",
        "status",
        "age",
        "creationTime",
        "occupiedSlots",
        "statusData",
    ):
        assert key in info
    assert isinstance(info["occupiedSlots"], str)
    apps = client.request("GET", f"/stream/session/{emulator.session}/apps").json()
    assert apps[0] == {"name": "sshd", "protocol": "tcp", "ports": [2200]}


# --- hooks ---


def test_hook_sessions_create_and_terminate(emulator: Emulator) -> None:
    import socket
    import uuid

    hook_name = "hook-" + uuid.uuid4().hex[:8]

    created = emulator.hook("POST", "sessions", {"name": hook_name})
    assert created["name"] == hook_name
    host, port = created["sshd"].rsplit(":", 1)
    client = api_client(emulator)
    assert client.request("GET", f"/session/{hook_name}").status_code == 200
    assert client.request("GET", f"/session/{created['id']}").json()["status"] == "RUNNING"
    with socket.create_connection((host, int(port)), timeout=5) as s:
        assert s.recv(64).startswith(b"SSH-2.0-")
    listed = {s["name"] for s in emulator.hook("GET", "sessions")}
    assert {hook_name, emulator.session} <= listed

    emulator.hook("DELETE", f"sessions/{hook_name}")
    assert client.request("GET", f"/session/{hook_name}").status_code == 404
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=5).close()


def test_hook_request_log_and_http_500(emulator: Emulator) -> None:
    emulator.hook("DELETE", "requests")
    client = session_client(emulator)
    client.request("GET", f"/session/{emulator.session}")
    log = emulator.hook("GET", "requests")
    entry = next(e for e in log if e["path"] == f"/func/session/{emulator.session}")
    assert entry["listener"] == "webserver"
    assert entry["headers"]["X-BackendAI-SessionID"] == client.session_id

    emulator.hook("POST", "faults", {"kind": "http_500", "path_prefix": "/session/", "count": 1})
    try:
        api = api_client(emulator)
        failed = api.request("GET", f"/session/{emulator.session}")
        assert failed.status_code == 500
        assert problem(failed)["type"] == PROBS + "internal-server-error"
        assert api.request("GET", f"/session/{emulator.session}").status_code == 200
    finally:
        emulator.hook("DELETE", "faults")


def test_login_blocking_when_enabled(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(extra_args=("--login-block-after", "3"))
    client = BaiClient(emu.webserver_url, mode="session")
    for _ in range(3):
        assert client.login(emu.username, "nope").json()["authenticated"] is False
    blocked = client.login(emu.username, emu.password)
    assert blocked.status_code == 429
    assert problem(blocked)["type"] == PROBS + "too-many-requests"
