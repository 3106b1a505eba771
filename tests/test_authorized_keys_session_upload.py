"""The session upload API (`POST /session/{name}/upload`): the client and the emulator model."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest

from sshkit.api.client import BackendClient
from sshkit.api.session_upload import MAX_FILE_SIZE
from sshkit.errors import NotFoundError, RejectedError, ServerError, UsageError
from sshkit.settings import Connection, load_connection
from tests.emulator_fixture import Emulator, EmulatorFactory


def api_client(emu: Emulator) -> BackendClient:
    env = {
        "SSHKIT_ENDPOINT": emu.manager_url,
        "SSHKIT_ENDPOINT_TYPE": "api",
        "SSHKIT_ACCESS_KEY": emu.access_key,
        "SSHKIT_SECRET_KEY": emu.secret_key,
    }
    return BackendClient.from_connection(load_connection(environ=env))


def session_home(emu: Emulator, name: str) -> Path:
    for item in emu.hook("GET", "sessions"):
        if item["name"] == name:
            return Path(item["home"])
    raise AssertionError(name)


@pytest.fixture
def session(emulator: Emulator) -> str:
    name = f"up-{uuid.uuid4().hex[:8]}"
    emulator.hook("POST", "sessions", {"name": name})
    return name


def raw_upload(client: BackendClient, session: str, parts: list[tuple[str, bytes]]) -> int:
    """POST a multipart body with several parts the way the official client signs it."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="src"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    url, rel = client._url(f"/session/{session}/upload")
    headers = client._auth_headers("POST", rel, "multipart/form-data")
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    resp = client._send("POST", url, headers=headers, data=body)
    if resp.status_code >= 400:
        raise client.error_for(resp, "upload")
    return resp.status_code


def test_new_file_lands_in_home_with_agent_modes(emulator: Emulator, session: str) -> None:
    client = api_client(emulator)
    client.upload_session_file(session, "notes/deep/a.txt", b"hello\n")
    home = session_home(emulator, session)
    target = home / "notes" / "deep" / "a.txt"
    assert target.read_bytes() == b"hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "notes").stat().st_mode) == 0o755
    # What the session download API reads back is what was uploaded.
    assert client.download_session_file(session, "notes/deep/a.txt") == b"hello\n"


def test_existing_file_keeps_its_mode(emulator: Emulator, session: str) -> None:
    client = api_client(emulator)
    path = session_home(emulator, session) / ".ssh" / "authorized_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    client.upload_session_file(session, ".ssh/authorized_keys", b"# replaced\n")
    assert path.read_bytes() == b"# replaced\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_limits_and_errors_match_the_server(emulator: Emulator, session: str) -> None:
    client = api_client(emulator)
    assert raw_upload(client, session, [(f"many/{i}", b"x") for i in range(20)]) == 204
    with pytest.raises(RejectedError, match="Too many files"):
        raw_upload(client, session, [(f"many/{i}", b"x") for i in range(21)])
    assert raw_upload(client, session, [("big", b"b" * (1024 * 1024 - 1))]) == 204
    with pytest.raises(RejectedError, match="Too large file"):
        raw_upload(client, session, [("big", b"b" * (1024 * 1024))])
    with pytest.raises(ServerError, match="outside /home/work"):
        client.upload_session_file(session, "../escape", b"x")
    assert not (session_home(emulator, session).parent / "escape").exists()
    with pytest.raises(NotFoundError):
        client.upload_session_file("no-such-session", "a", b"x")
    with pytest.raises(UsageError, match="under 1 MiB"):
        client.upload_session_file(session, "big", b"b" * (MAX_FILE_SIZE + 1))


def test_session_mode_goes_through_the_webserver(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(server_version="23.09")
    name = f"up-{uuid.uuid4().hex[:8]}"
    emu.hook("POST", "sessions", {"name": name})
    conn = Connection(
        endpoint=emu.webserver_url,
        endpoint_type="session",
        access_key=None,
        secret_key=None,
        session_id=None,
        api_version=None,
        verify_tls=True,
        ca_bundle=None,
        profile="default",
    )
    login = BackendClient.from_connection(conn).login(emu.username, emu.password)
    client = BackendClient.from_connection(conn.replace(session_id=login.session_id))
    emu.hook("DELETE", "requests")
    client.upload_session_file(name, "from-web.txt", b"via /func\n")
    assert (session_home(emu, name) / "from-web.txt").read_bytes() == b"via /func\n"
    paths = [r["path"] for r in emu.hook("GET", "requests")]
    assert f"/func/session/{name}/upload" in paths
