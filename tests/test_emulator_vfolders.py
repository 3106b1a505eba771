"""Emulated vfolders (spec §7): names, listing, tus upload + download round trips, delete;
the keypair's SSH key (§7.8) and the `.ssh` dot-folder model."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from tests.emulator.testclient import BaiClient
from tests.emulator_fixture import HERMETIC_SSH, Emulator, EmulatorFactory

PROBS = "https://api.backend.ai/probs/"


def new_folder(emu: Emulator, client: BaiClient | None = None) -> str:
    name = "f-" + uuid.uuid4().hex[:10]
    resp = (client or emu.api_client()).request(
        "POST", "/folders", json_body={"name": name, "host": "local:volume1"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == name
    return name


def tus_upload(emu: Emulator, folder: str, path: str, data: bytes, chunk: int) -> None:
    grant = emu.api_client().request(
        "POST", f"/folders/{folder}/request-upload", json_body={"path": path, "size": len(data)}
    )
    assert grant.status_code == 200, grant.text
    url = grant.json()["url"]
    assert url == emu.storage_url + "/upload"
    token = grant.json()["token"]
    offset = 0
    while True:
        body = data[offset : offset + chunk]
        resp = requests.patch(
            url,
            params={"token": token},
            data=body,
            headers={
                "Upload-Offset": str(offset),
                "Tus-Resumable": "1.0.0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=60,
        )
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])
        assert resp.headers["Upload-Length"] == str(len(data))
        if offset >= len(data):
            return


def download(emu: Emulator, folder: str, path: str, **headers: str) -> requests.Response:
    grant = emu.api_client().request(
        "POST", f"/folders/{folder}/request-download", json_body={"path": path}
    )
    assert grant.status_code == 200, grant.text
    return requests.get(
        grant.json()["url"], params={"token": grant.json()["token"]}, headers=headers, timeout=60
    )


@pytest.mark.parametrize("version", ["23.09", "24.09", "26.3"])
def test_reserved_and_invalid_names_refused(
    emulator_factory: EmulatorFactory, version: str
) -> None:
    emu = emulator_factory(server_version=version)
    client = emu.api_client()
    for name in (".ssh", ".bashrc", ".zsh_profile", ".jupyter", ".terminfo", "/etc"):
        resp = client.request("POST", "/folders", json_body={"name": name})
        assert resp.status_code == 400, (name, resp.text)
        body = resp.json()
        assert body["type"] == PROBS + "invalid-api-params"
        if not name.startswith("/") or version != "23.09":
            assert "reserved for internal operations" in body["msg"], body
    if version == "23.09":
        bad = client.request("POST", "/folders", json_body={"name": "bad name!"})
        assert bad.status_code == 400
        assert bad.json()["data"] == {"name": "value must be a valid slug."}
    else:
        long = client.request("POST", "/folders", json_body={"name": "x" * 65})
        assert long.status_code == 400
    name = new_folder(emu, client)
    dup = client.request("POST", "/folders", json_body={"name": name})
    assert dup.status_code == 400 and dup.json()["type"] == PROBS + "vfolder-already-exists"
    # A dot-prefixed name that is not reserved is fine.
    dot = client.request("POST", "/folders", json_body={"name": ".cfg-" + uuid.uuid4().hex[:6]})
    assert dot.status_code == 201


@pytest.mark.parametrize("version", ["23.09", "26.3"])
def test_tus_round_trip_byte_exact(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    folder = new_folder(emu)
    data = os.urandom(5 * 1024 * 1024 + 123)
    tus_upload(emu, folder, "sub/dir/blob.bin", data, chunk=2 * 1024 * 1024)
    resp = download(emu, folder, "sub/dir/blob.bin")
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(len(data))
    assert "Last-Modified" in resp.headers
    assert "blob.bin" in resp.headers["Content-Disposition"]
    assert hashlib.sha256(resp.content).digest() == hashlib.sha256(data).digest()
    # Resume with Range / If-Range.
    partial = download(
        emu,
        folder,
        "sub/dir/blob.bin",
        Range="bytes=1000-",
        **{"If-Range": resp.headers["Last-Modified"]},
    )
    assert partial.status_code == 206
    assert partial.content == data[1000:]
    # Zero-byte file: one empty PATCH finalises it.
    tus_upload(emu, folder, "empty.txt", b"", chunk=1)
    assert download(emu, folder, "empty.txt").content == b""
    # The finished upload session is gone.
    missing = download(emu, folder, "nope.txt")
    assert missing.status_code == 404
    assert missing.json()["type"] == PROBS + "storage/file-not-found"


@pytest.mark.parametrize("version", ["23.09", "26.3"])
def test_tus_offset_strictness(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    folder = new_folder(emu)
    grant = (
        emu.api_client()
        .request(
            "POST", f"/folders/{folder}/request-upload", json_body={"path": "a.txt", "size": 6}
        )
        .json()
    )
    url, token = grant["url"], grant["token"]
    first = requests.patch(
        url,
        params={"token": token},
        data=b"abc",
        timeout=30,
        headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
    )
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "3"
    head = requests.head(url, params={"token": token}, timeout=30)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "3" and head.headers["Upload-Length"] == "6"
    no_offset = requests.patch(url, params={"token": token}, data=b"d", timeout=30)
    wrong = requests.patch(
        url, params={"token": token}, data=b"d", timeout=30, headers={"Upload-Offset": "0"}
    )
    if version == "26.3":
        assert no_offset.status_code == 400
        assert wrong.status_code == 409
        rest = requests.patch(
            url, params={"token": token}, data=b"def", timeout=30, headers={"Upload-Offset": "3"}
        )
        assert rest.status_code == 204
        assert download(emu, folder, "a.txt").content == b"abcdef"
    else:
        # 23.09 ignores Upload-Offset and appends.
        assert no_offset.status_code == 204 and wrong.status_code == 204
        last = requests.patch(url, params={"token": token}, data=b"f", timeout=30)
        assert last.status_code == 204
        assert download(emu, folder, "a.txt").content == b"abcddf"
    gone = requests.patch(
        url, params={"token": token}, data=b"x", timeout=30, headers={"Upload-Offset": "6"}
    )
    assert gone.status_code == 404
    assert gone.json()["type"] == PROBS + "storage/no-such-upload-session"


@pytest.mark.parametrize("version", ["23.09", "26.3"])
def test_list_info_and_delete_files(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    client = emu.api_client()
    folder = new_folder(emu, client)
    emu.hook(
        "POST",
        f"vfolders/{folder}/files",
        {"path": "a.txt", "content_b64": base64.b64encode(b"hello").decode()},
    )
    emu.hook(
        "POST",
        f"vfolders/{folder}/files",
        {"path": "d/b.txt", "content_b64": base64.b64encode(b"x").decode()},
    )
    listing = client.request("GET", f"/folders/{folder}/files", params={"path": "."}).json()
    items = {i["name"]: i for i in listing["items"]}
    assert items["a.txt"]["type"] == "FILE" and items["a.txt"]["size"] == 5
    assert items["d"]["type"] == "DIRECTORY"
    if version == "23.09":
        assert items["a.txt"]["mode"] == "644"
        assert "files" in listing and '"filename": "a.txt"' in listing["files"]
        body_form = client.request("GET", f"/folders/{folder}/files", json_body={"path": "d"})
        assert [i["name"] for i in body_form.json()["items"]] == ["b.txt"]
    else:
        assert items["a.txt"]["mode"] == 0o100644
        assert "files" not in listing

    info = client.request("GET", f"/folders/{folder}").json()
    assert info["name"] == folder and info["num_files"] == 2 and info["numFiles"] == 2
    listed = client.request("GET", "/folders").json()
    assert folder in {f["name"] for f in listed}
    assert client.request("GET", "/folders/does-not-exist").status_code == 404

    not_recursive = client.request(
        "DELETE", f"/folders/{folder}/delete-files", json_body={"files": ["d"]}
    )
    assert not_recursive.status_code == 400
    ok = client.request(
        "DELETE",
        f"/folders/{folder}/delete-files",
        json_body={"files": ["a.txt", "d"], "recursive": True},
    )
    assert ok.status_code == 200 and ok.json() == {}
    assert (
        client.request("GET", f"/folders/{folder}/files", params={"path": ""}).json()["items"] == []
    )
    escape = client.request("GET", f"/folders/{folder}/files", params={"path": "../.."})
    assert escape.status_code == 400


def _ssh(emu: Emulator, session: str, key: Path) -> subprocess.CompletedProcess[str]:
    host, port = emu.sshd_addr(session) if session in emu.info["sshd"] else _addr(emu, session)
    return subprocess.run(
        ["ssh", *HERMETIC_SSH, "-i", str(key), "-p", str(port), f"{emu.ssh_user}@{host}",
         "echo ok"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _addr(emu: Emulator, session: str) -> tuple[str, int]:
    sess = next(s for s in emu.hook("GET", "sessions") if s["name"] == session)
    host, port = sess["sshd"].rsplit(":", 1)
    return host, int(port)


def test_ssh_keypair_changes_new_sessions(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = emulator_factory(fresh=True)
    client = emu.api_client()
    before = client.request("GET", "/auth/ssh-keypair").json()["ssh_public_key"]
    assert before.startswith("ssh-rsa ") and before.endswith("\n")
    old_key = tmp_path / "old"
    assert emu.download_key(emu.session, old_key).status_code == 200

    regenerated = client.request("PATCH", "/auth/ssh-keypair").json()
    assert regenerated["ssh_public_key"] != before
    assert regenerated["ssh_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    emu.hook("POST", "sessions", {"name": "after-patch"})
    new_key = tmp_path / "new"
    assert emu.download_key("after-patch", new_key).status_code == 200
    assert new_key.read_text() == regenerated["ssh_private_key"]
    assert _ssh(emu, "after-patch", new_key).stdout == "ok\n"
    assert _ssh(emu, "after-patch", old_key).returncode == 255
    # The running session keeps the key it started with.
    assert _ssh(emu, emu.session, old_key).stdout == "ok\n"

    # Upload our own pair.
    own = tmp_path / "own"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", str(own)],
        check=True,
    )
    uploaded = client.request(
        "POST",
        "/auth/ssh-keypair",
        json_body={
            "pubkey": own.with_suffix(".pub").read_text().strip(),
            "privkey": own.read_text(),
        },
    )
    assert uploaded.status_code == 200
    assert client.request("GET", "/auth/ssh-keypair").json()["ssh_public_key"].endswith("\n")
    emu.hook("POST", "sessions", {"name": "after-post"})
    assert _ssh(emu, "after-post", own).stdout == "ok\n"


def test_dot_ssh_folder(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = emulator_factory(allow_dot_ssh_folder=True, fresh=True)
    client = emu.api_client()
    assert client.request("POST", "/folders", json_body={"name": ".ssh"}).status_code == 201
    own = tmp_path / "own"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True)
    emu.hook("POST", "vfolders/.ssh/files", {
        "path": "authorized_keys",
        "content_b64": base64.b64encode(own.with_suffix(".pub").read_bytes()).decode(),
        "mode": "600",
    })  # fmt: skip
    emu.hook("POST", "sessions", {"name": "with-dot-ssh"})
    assert _ssh(emu, "with-dot-ssh", own).stdout == "ok\n"
    # As on a real agent: with ~/.ssh mounted, no id_container is written.
    missing = emu.download_key("with-dot-ssh", tmp_path / "k")
    assert missing.status_code == 500
    # 26.8: the agent's FileNotFoundError reaches the client as a bare 500 (spec §14).
    assert missing.json()["type"] == PROBS + "internal-server-error"
    # The keypair's key does not get in.
    keypair_key = tmp_path / "keypair"
    assert emu.download_key(emu.session, keypair_key).status_code == 200
    assert _ssh(emu, "with-dot-ssh", keypair_key).returncode == 255


def test_auth_helpers(emulator: Emulator) -> None:
    client = emulator.api_client()
    assert client.request("GET", "/auth/test", params={"echo": "hi"}).json() == {
        "authorized": "yes",
        "echo": "hi",
    }
    assert client.request("GET", "/auth/role").json()["global_role"] == "user"


def test_last_modified_is_http_date(emulator: Emulator) -> None:
    folder = new_folder(emulator)
    tus_upload(emulator, folder, "x", b"12345", chunk=5)
    resp = download(emulator, folder, "x")
    assert email.utils.parsedate_to_datetime(resp.headers["Last-Modified"]) is not None
