"""fetch_container_key end to end over a fake transport: safe writes, backups, refusals."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sshkit.api.client import BackendClient
from sshkit.errors import ConfigError, KeyFormatError, UnsafeDownloadError
from sshkit.services.account import default_key_path, fetch_container_key
from sshkit.settings import Connection
from tests.api_fakes import Reply, fake_session


def rsa_pem() -> tuple[bytes, str]:
    import base64
    import hashlib

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    blob = base64.b64decode(
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .split()[1]
    )
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return pem, fp


def tar_of(*members: tuple[str, bytes, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/shadow"
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def multipart(tar: bytes) -> Reply:
    body = b"--B\r\nContent-Type: application/octet-stream\r\n\r\n" + tar + b"\r\n--B--\r\n"
    return Reply(200, body, {"Content-Type": "multipart/mixed; boundary=B"})


def server(download: Reply) -> requests.Session:
    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/":
            return Reply(200, {"version": "v9.20250722", "manager": "26.8.1"})
        assert req.method == "POST" and req.path_url.startswith("/session/demo/download?")
        return download

    return fake_session(handler)[0]


CONN = Connection(
    endpoint="http://127.0.0.1:8090",
    endpoint_type="api",
    access_key="AK",
    secret_key="SK",
    session_id=None,
    api_version=None,
    verify_tls=True,
    ca_bundle=None,
    profile="work",
)


def test_writes_0600_in_a_private_per_profile_dir(hermetic_home: Path) -> None:
    pem, fp = rsa_pem()
    reg = tarfile.REGTYPE
    http = server(multipart(tar_of(("id_container", reg, pem))))
    result = fetch_container_key(BackendClient(CONN, http=http), "demo")
    assert result.path == hermetic_home / ".ssh" / "sshkit" / "work" / "id_container"
    assert result.path == default_key_path("work")
    assert result.path.read_bytes() == pem
    assert result.fingerprint == fp and result.key_type == "ssh-rsa" and result.bits == 2048
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    for d in (hermetic_home / ".ssh", result.path.parent.parent, result.path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert result.backup is None and result.changed


def test_existing_keys_are_kept_as_backups(hermetic_home: Path) -> None:
    out = hermetic_home / "k" / "id_container"
    pems = [rsa_pem()[0] for _ in range(3)]
    reg = tarfile.REGTYPE
    results = [
        fetch_container_key(
            BackendClient(CONN, http=server(multipart(tar_of(("id_container", reg, p))))),
            "demo",
            out,
        )
        for p in [pems[0], pems[0], pems[1], pems[2]]
    ]
    assert [r.changed for r in results] == [True, False, True, True]
    assert results[1].backup is None
    assert results[2].backup == out.with_name("id_container.sshkit-backup")
    assert results[3].backup == out.with_name("id_container.sshkit-backup.1")
    assert out.read_bytes() == pems[2]
    assert out.with_name("id_container.sshkit-backup").read_bytes() == pems[0]
    assert out.with_name("id_container.sshkit-backup.1").read_bytes() == pems[1]
    for path in out.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "reply",
    [
        multipart(tar_of(("../id_container", tarfile.REGTYPE, b"x"))),
        multipart(tar_of(("/home/work/id_container", tarfile.REGTYPE, b"x"))),
        multipart(tar_of(("id_container", tarfile.SYMTYPE, b""))),
        multipart(tar_of(("id_container", tarfile.REGTYPE, b"x"), ("evil", tarfile.REGTYPE, b"y"))),
        multipart(tar_of(("id_container", tarfile.REGTYPE, b"k" * (2 * 1024 * 1024)))),
        Reply(
            200, b"-----BEGIN RSA PRIVATE KEY-----\n", {"Content-Type": "application/octet-stream"}
        ),
    ],
    ids=["dotdot", "absolute", "symlink", "two-members", "2MiB", "not-multipart"],
)
def test_malicious_downloads_write_nothing(hermetic_home: Path, reply: Reply) -> None:
    with pytest.raises(UnsafeDownloadError):
        fetch_container_key(BackendClient(CONN, http=server(reply)), "demo")
    assert not (hermetic_home / ".ssh").exists()
    assert list(hermetic_home.rglob("*id_container*")) == []


def test_a_download_that_is_not_a_key_writes_nothing(hermetic_home: Path) -> None:
    reply = multipart(tar_of(("id_container", tarfile.REGTYPE, b"hello, not a key\n")))
    with pytest.raises(KeyFormatError):
        fetch_container_key(BackendClient(CONN, http=server(reply)), "demo")
    assert not (hermetic_home / ".ssh").exists()


def test_existing_key_untouched_on_failure(hermetic_home: Path) -> None:
    out = hermetic_home / "id_container"
    old = b"-----BEGIN OPENSSH PRIVATE KEY-----\nold key\n"
    out.write_bytes(old)
    reply = multipart(tar_of(("id_container", tarfile.SYMTYPE, b"")))
    with pytest.raises(UnsafeDownloadError):
        fetch_container_key(BackendClient(CONN, http=server(reply)), "demo", out)
    assert out.read_bytes() == old
    assert sorted(p.name for p in hermetic_home.iterdir() if "id_container" in p.name) == [
        "id_container"
    ]


def test_profile_names_cannot_escape(hermetic_home: Path) -> None:
    with pytest.raises(ConfigError):
        default_key_path("../../etc")
