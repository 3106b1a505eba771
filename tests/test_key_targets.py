"""Key outputs never follow a symlink or replace a file that is not a key (issue 14, item 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.api.client import BackendClient
from sshkit.errors import ExitCode, LocalFileError
from sshkit.localfs import check_key_target, looks_like_key
from sshkit.services.account import default_key_path, fetch_container_key
from sshkit.settings import Connection
from tests.api_fakes import Reply, fake_session

SSHKIT = Path(sys.executable).parent / "sshkit"
BASHRC = b"export PATH=$HOME/bin:$PATH\n"


def conn() -> Connection:
    return Connection(
        endpoint="http://h",
        endpoint_type="session",
        access_key=None,
        secret_key=None,
        session_id="S",
        api_version=None,
        verify_tls=True,
        ca_bundle=None,
        profile="default",
    )


def test_fetch_key_refuses_a_symlinked_key_path(hermetic_home: Path) -> None:
    bashrc = hermetic_home / ".bashrc"
    bashrc.write_bytes(BASHRC)
    key = default_key_path("default")
    key.parent.mkdir(parents=True)
    key.symlink_to(bashrc)
    http, adapter = fake_session(lambda req: Reply(500, b""))
    with pytest.raises(LocalFileError, match="symbolic link"):
        fetch_container_key(BackendClient(conn(), http=http), "s1")
    assert bashrc.read_bytes() == BASHRC
    assert adapter.requests == []  # refused before asking the server


def test_fetch_key_refuses_to_overwrite_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\n")
    http, _ = fake_session(lambda req: Reply(500, b""))
    with pytest.raises(LocalFileError, match="not a key"):
        fetch_container_key(BackendClient(conn(), http=http), "s1", notes)
    assert notes.read_bytes() == b"my notes\n"


def test_force_allows_it(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    check_key_target(link, force=True)
    with pytest.raises(LocalFileError):
        check_key_target(link)


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
        b"PuTTY-User-Key-File-3: ssh-ed25519\n",
        b"ssh-ed25519 AAAA c\n",
        b"",
    ],
)
def test_existing_keys_may_be_replaced(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "k"
    path.write_bytes(data)
    check_key_target(path)
    assert looks_like_key(data) or not data


def test_to_ppk_does_not_write_through_a_dangling_symlink(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = tmp_path / "victim"
    out = tmp_path / "out.ppk"
    out.symlink_to(target)
    proc = subprocess.run(
        [str(SSHKIT), "to-ppk", str(key), "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == ExitCode.LOCAL_FILE, proc.stderr
    assert not target.exists()


def test_export_does_not_replace_a_symlinked_ppk(tmp_path: Path, hermetic_home: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    bashrc = hermetic_home / ".bashrc"
    bashrc.write_bytes(BASHRC)
    (tmp_path / "id_ed25519.ppk").symlink_to(bashrc)
    proc = subprocess.run(
        [str(SSHKIT), "export", "putty", "s1", "--key", str(key), "-o", "-"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == ExitCode.LOCAL_FILE, proc.stderr
    assert bashrc.read_bytes() == BASHRC
