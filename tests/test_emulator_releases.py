"""The emulator's release profiles against the facts read from the real sources (spec §14).

Each test pins one fact at the profile(s) that show it: download verbs, the 26.3 session
info 500, login (401, TOTP, the concurrent-login cap, logout status), error_code, sessions
that are not running yet, duplicate names, Kubernetes key paths, keypair validation, the
rate limit, and session-mode websockets that swallow the manager's close codes.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.emulator.testclient import BaiClient
from tests.emulator.totp import totp
from tests.emulator_fixture import Emulator, EmulatorFactory

PROBS = "https://api.backend.ai/probs/"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _session_client(emu: Emulator) -> BaiClient:
    client = BaiClient(emu.webserver_url, mode="session")
    assert client.login(emu.username, emu.password).json()["authenticated"]
    return client


def _ws_target(emu: Emulator, session: str, *, mode: str) -> tuple[str, dict[str, str]]:
    client = emu.api_client() if mode == "api" else _session_client(emu)
    url, headers = client.url_and_headers(
        "GET",
        f"/stream/session/{session}/tcpproxy",
        params={"app": "sshd"},
        content_type="application/octet-stream",
    )
    return "ws" + url[len("http") :], headers


def _login(emu: Emulator, **body: object) -> requests.Response:
    return requests.post(
        emu.webserver_url + "/server/login",
        json={"username": emu.username, "password": emu.password, **body},
        timeout=30,
    )


# --- download verbs (fact 3) ---


def test_download_26_3_json_body_only(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(server_version="26.3")
    client = emu.api_client()
    path = f"/session/{emu.session}/download"
    ok = client.request("POST", path, json_body={"files": ["id_container"]})
    assert ok.status_code == 200, ok.text
    assert ok.headers["Content-Type"].startswith("multipart/mixed")
    query = client.request("POST", path, params={"files": "id_container"})
    assert query.status_code == 400
    assert query.json()["type"] == PROBS + "generic-bad-request"
    assert client.request("GET", path, params={"files": "id_container"}).status_code == 405
    # pydantic's `files: list[str]`: one bare name is not a list (tx.MultiKey took it before).
    bare = client.request("POST", path, json_body={"files": "id_container"})
    assert bare.status_code == 400
    assert bare.json()["type"] == PROBS + "invalid-api-params"
    # Missing file from 26.1: a bare 500, not kernel-execution-failed.
    missing = client.request("POST", path, json_body={"files": ["nope.txt"]})
    assert missing.status_code == 500
    assert missing.json()["type"] == PROBS + "internal-server-error"
    assert "agent-details" not in missing.json()


# --- session info (fact 2) and sessions not running yet (fact 5) ---


def test_session_info_500_on_26_3_for_running_sessions(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(server_version="26.3")
    client = emu.api_client()
    resp = client.request("GET", f"/session/{emu.session}")
    assert resp.status_code == 500
    assert resp.json()["type"] == PROBS + "internal-server-error"
    # The apps list still works, and a session that is not running has no container id.
    assert client.request("GET", f"/stream/session/{emu.session}/apps").status_code == 200
    name = _name("prep")
    emu.hook("POST", "sessions", {"name": name, "status": "PREPARING"})
    try:
        info = client.request("GET", f"/session/{name}")
        assert info.status_code == 200 and info.json()["status"] == "PREPARING"
    finally:
        emu.hook("DELETE", f"sessions/{name}")


@pytest.mark.parametrize("version", ["23.09", "26.8"])
def test_preparing_session(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    client = emu.api_client()
    name = _name("prep")
    created = emu.hook("POST", "sessions", {"name": name, "status": "PREPARING"})
    assert created["status"] == "PREPARING" and created["sshd"] is None
    try:
        info = client.request("GET", f"/session/{name}").json()
        assert info["status"] == "PREPARING"
        assert info["containerId"] == ("None" if version == "23.09" else None)
        assert client.request("GET", f"/stream/session/{name}/apps").json() == []
        download = emu.download_key(name, Path("/nonexistent/never-written"))
        assert download.status_code == 500

        async def status(url: str, headers: dict[str, str]) -> int:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers=headers):
                    pass
            return info.value.response.status_code

        assert asyncio.run(status(*_ws_target(emu, name, mode="api"))) == 500
        assert asyncio.run(status(*_ws_target(emu, name, mode="session"))) == 502
    finally:
        emu.hook("DELETE", f"sessions/{name}")


def test_ready_after(emulator: Emulator) -> None:
    name = _name("later")
    created = emulator.hook(
        "POST", "sessions", {"name": name, "status": "PREPARING", "ready_after": 1.0}
    )
    assert created["status"] == "PREPARING"
    try:
        deadline = time.monotonic() + 30
        status = ""
        while time.monotonic() < deadline:
            listed = {s["name"]: s for s in emulator.hook("GET", "sessions")}
            status = listed[name]["status"]
            if status == "RUNNING":
                assert listed[name]["sshd"]
                break
            time.sleep(0.2)
        assert status == "RUNNING"
        apps = emulator.api_client().request("GET", f"/stream/session/{name}/apps").json()
        assert "sshd" in {a["name"] for a in apps}
    finally:
        emulator.hook("DELETE", f"sessions/{name}")


# --- name lookup (fact 6) ---


def test_duplicate_names_too_many_sessions_matched(emulator: Emulator) -> None:
    name = _name("twin")
    first = emulator.hook("POST", "sessions", {"name": name})
    second = emulator.hook("POST", "sessions", {"name": name})
    try:
        resp = emulator.api_client().request("GET", f"/session/{name}")
        assert resp.status_code == 404
        body = resp.json()
        assert body["type"] == PROBS + "too-many-sessions-matched"
        assert {m["id"] for m in body["data"]["matches"]} == {first["id"], second["id"]}
        # The id still picks one.
        by_id = emulator.api_client().request("GET", f"/session/{first['id']}")
        assert by_id.status_code == 200
    finally:
        emulator.hook("DELETE", f"sessions/{first['id']}")
        emulator.hook("DELETE", f"sessions/{second['id']}")


# --- login (fact 4) ---


@pytest.mark.parametrize(("version", "status"), [("24.09", 200), ("26.3", 200), ("26.8", 401)])
def test_failed_login_status(emulator_factory: EmulatorFactory, version: str, status: int) -> None:
    emu = emulator_factory(server_version=version)
    bad = _login(emu, password="wrong")
    assert bad.status_code == status
    assert bad.json()["authenticated"] is False


@pytest.mark.parametrize(("version", "status"), [("24.09", 201), ("26.3", 200)])
def test_logout_status(emulator_factory: EmulatorFactory, version: str, status: int) -> None:
    emu = emulator_factory(server_version=version)
    client = _session_client(emu)
    out = client.http.post(
        emu.webserver_url + "/server/logout",
        headers={"X-BackendAI-SessionID": str(client.session_id)},
        timeout=30,
    )
    assert out.status_code == status


def test_totp_login(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(extra_args=("--totp",))
    secret = emu.info["totp_secret"]
    first = _login(emu)
    assert first.status_code == 200
    assert first.json()["authenticated"] is False
    assert first.json()["data"]["type"].endswith("require-totp-authentication")
    wrong = _login(emu, otp="000000" if totp(secret, time.time()) != "000000" else "111111")
    assert wrong.json()["authenticated"] is False
    assert wrong.status_code == 401  # 26.8: the manager's status
    # LoginRequest's `otp: str | None`: the right code as a JSON number is refused.
    code = totp(secret, time.time())
    as_number = _login(emu, otp=int(code))
    assert as_number.status_code == 400 and as_number.json()["authenticated"] is False
    good = _login(emu, otp=totp(secret, time.time()))
    assert good.status_code == 200 and good.json()["authenticated"] is True


def test_login_cap(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(extra_args=("--max-concurrent-logins", "1"), fresh=True)
    first = _login(emu)
    assert first.json()["authenticated"] is True
    sid = first.headers["X-BackendAI-SessionID"]
    capped = _login(emu)
    assert capped.status_code == 409
    # The manager's TooManyConcurrentLoginSessions, passed on by the webserver.
    assert capped.json()["authenticated"] is False
    assert capped.json()["data"]["type"] == PROBS + "active-login-session-exists"
    forced = _login(emu, force=True)
    assert forced.status_code == 200 and forced.json()["authenticated"] is True
    # The oldest login was ended.
    old = requests.get(
        emu.webserver_url + f"/func/session/{emu.session}",
        headers={"X-BackendAI-SessionID": sid},
        timeout=30,
    )
    assert old.status_code == 401


def test_login_cap_needs_26_8(tmp_path: Path) -> None:
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--server-version", "26.3",
         "--max-concurrent-logins", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "26.8" in out.stderr


@pytest.mark.parametrize("version", ["23.09", "26.3"])
def test_totp_needs_26_8(version: str) -> None:
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--server-version", version, "--totp"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "26.8" in out.stderr


def test_login_reads_the_json_body_only(emulator: Emulator) -> None:
    """The webserver reads the credentials from the body: in the query they are missing."""
    resp = requests.post(
        emulator.webserver_url + "/server/login",
        params={"username": emulator.username, "password": emulator.password},
        timeout=30,
    )
    assert resp.status_code == 400
    # The webserver's own body: the message is the title; no msg, no error_code.
    assert resp.json() == {
        "type": PROBS + "invalid-api-params",
        "title": "You must provide the username field.",
    }
    assert "X-BackendAI-SessionID" not in resp.headers


def test_signed_request_needs_an_api_version(emulator: Emulator) -> None:
    """sign_request refuses to sign without X-BackendAI-Version (400), never signs ''."""
    client = emulator.api_client()
    client.api_version = ""
    url, headers = client.url_and_headers("GET", f"/session/{emulator.session}")
    del headers["X-BackendAI-Version"]
    resp = requests.get(url, headers={**headers, "Content-Type": "text/plain"}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["type"] == PROBS + "invalid-auth-params"


# --- error_code (25.8+) ---


@pytest.mark.parametrize("version", ["23.09", "24.09", "26.3", "26.8"])
def test_error_code(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    body = emu.api_client().request("GET", "/session/no-such-session").json()
    assert body["type"] == PROBS + "object-not-found"
    if version in ("26.3", "26.8"):
        assert body["error_code"] == "session_generic_object-not-found"
    else:
        assert "error_code" not in body


def test_webserver_own_errors(emulator: Emulator) -> None:
    """The webserver's own answers (web/auth.py, web/proxy.py): type and title only,
    no `error_code`, and a failed websocket upstream says nothing of the manager's status."""
    client = _session_client(emulator)
    url, headers = client.url_and_headers(
        "GET", "/stream/session/no-such-session/tcpproxy", params={"app": "sshd"}
    )
    gateway = requests.get(url, headers=headers, timeout=30)
    assert gateway.status_code == 502
    assert gateway.json() == {
        "type": PROBS + "bad-gateway",
        "title": "The proxy target server is inaccessible.",
    }
    anonymous = requests.get(
        emulator.webserver_url + f"/func/session/{emulator.session}", timeout=30
    )
    assert anonymous.status_code == 401
    assert anonymous.json() == {"type": PROBS + "auth-failed", "title": "Unauthorized access"}
    # The manager's answers, proxied, keep theirs (26.8).
    proxied = client.request("GET", "/session/no-such-session")
    assert proxied.status_code == 404 and "error_code" in proxied.json()


# --- Kubernetes (fact 7) ---


def test_kubernetes_key_path(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = emulator_factory(extra_args=("--kubernetes",))
    assert emu.info["kubernetes"] is True
    assert emu.download_key(emu.session, tmp_path / "a").status_code == 500
    key = tmp_path / "k"
    resp = emu.download_key(emu.session, key, file=".ssh/id_container")
    assert resp.status_code == 200
    assert key.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")


# --- keypair validation (fact 8) ---


def _keypair(tmp_path: Path, fmt: str) -> tuple[str, str]:
    key = tmp_path / f"k-{fmt}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-m", fmt, "-f", str(key)],
        check=True,
    )
    return key.with_suffix(".pub").read_text(), key.read_text()


@pytest.mark.parametrize("version", ["23.09", "26.3", "26.8"])
def test_ssh_keypair_validation(
    emulator_factory: EmulatorFactory, tmp_path: Path, version: str
) -> None:
    emu = emulator_factory(server_version=version, fresh=True)
    client = emu.api_client()
    pub_pem, priv_pem = _keypair(tmp_path, "PEM")
    pub_other, priv_openssh = _keypair(tmp_path, "RFC4716")
    mismatched = client.request(
        "POST", "/auth/ssh-keypair", json_body={"pubkey": pub_other, "privkey": priv_pem}
    )
    openssh = client.request(
        "POST", "/auth/ssh-keypair", json_body={"pubkey": pub_other, "privkey": priv_openssh}
    )
    if version == "23.09":
        assert mismatched.status_code == 200  # no validation before 25.6.0
        assert openssh.status_code == 200
    else:
        assert mismatched.status_code == 400
        assert "does not match" in mismatched.json()["msg"]
        assert openssh.status_code == (200 if version == "26.8" else 400)
    # The public key goes to load_ssh_public_key as given: a leading blank is refused.
    blank = client.request(
        "POST", "/auth/ssh-keypair", json_body={"pubkey": " " + pub_pem, "privkey": priv_pem}
    )
    assert blank.status_code == (200 if version == "23.09" else 400)
    good = client.request(
        "POST", "/auth/ssh-keypair", json_body={"pubkey": pub_pem, "privkey": priv_pem}
    )
    assert good.status_code == 200


# --- rate limit (fact 9) ---


def test_rate_limit_fault(emulator: Emulator) -> None:
    emulator.hook("POST", "faults", {"kind": "rate_limit", "count": 1})
    try:
        for client in (emulator.api_client(), _session_client(emulator)):
            emulator.hook("DELETE", "faults")
            emulator.hook("POST", "faults", {"kind": "rate_limit", "count": 1})
            resp = client.request("GET", f"/session/{emulator.session}")
            assert resp.status_code == 429
            assert resp.json()["type"] == PROBS + "rate-limit-exceeded"
            # Raised before the middleware sets its headers: none on the 429 itself.
            assert not any(h.lower().startswith("x-ratelimit-") for h in resp.headers)
            assert "Retry-After" not in resp.headers
            assert client.request("GET", f"/session/{emulator.session}").status_code == 200
    finally:
        emulator.hook("DELETE", "faults")


# --- session-mode websockets (fact 1) ---


async def _outcome(url: str, headers: dict[str, str], wait: float) -> str:
    """'closed CODE' when the server closed within `wait` s, else 'open' (pings answered)."""
    async with connect(url, additional_headers=headers, ping_interval=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), wait)
        except TimeoutError:
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            return "open"
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        return "data"


@pytest.mark.parametrize("version", ["23.09", "26.8"])
def test_session_mode_swallows_close_codes(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    name = _name("swallow")
    emu.hook("POST", "sessions", {"name": name})
    try:
        for mode, expected in (("api", "closed 1013"), ("session", "open")):
            emu.hook("POST", "faults", {"kind": "refuse_sshd", "session": name, "count": 1})
            assert asyncio.run(_outcome(*_ws_target(emu, name, mode=mode), 2.0)) == expected

        async def terminated(mode: str) -> str:
            url, headers = _ws_target(emu, name, mode=mode)
            async with connect(url, additional_headers=headers, ping_interval=None) as ws:
                banner = await asyncio.wait_for(ws.recv(), 10)
                assert bytes(banner).startswith(b"SSH-2.0-")
                await asyncio.to_thread(emu.hook, "DELETE", f"sessions/{name}")
                try:
                    await asyncio.wait_for(ws.recv(), 2.0)
                except TimeoutError:
                    await asyncio.wait_for(await ws.ping(), 5)
                    return "open"
                except ConnectionClosed as exc:
                    return f"closed {exc.rcvd.code if exc.rcvd else None}"
                return "data"

        assert asyncio.run(terminated("session")) == "open"
        emu.hook("POST", "sessions", {"name": name})
        assert asyncio.run(terminated("api")) == "closed 1001"
    finally:
        emu.hook("DELETE", "faults")
        if name in {s["name"] for s in emu.hook("GET", "sessions")}:
            emu.hook("DELETE", f"sessions/{name}")


def test_totp_vector() -> None:
    # RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp(secret, 59) == "287082"
    assert totp(secret, 1111111109) == "081804"
