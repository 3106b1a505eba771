"""fix-perms: what OpenSSH checks (key-and-config-formats §6.7), fixed and reported."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.errors import ExitCode, LocalFileError
from sshkit.services.perms import (
    check_permissions,
    fix_permissions,
    icacls_command,
    is_private_key,
    wanted_mode,
)

PRIVATE = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    b"-----END OPENSSH PRIVATE KEY-----\n"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def messy_ssh(hermetic_home: Path) -> Path:
    ssh = hermetic_home / ".ssh"
    (ssh / "sshkit" / "default").mkdir(parents=True)
    os.chmod(ssh, 0o755)
    os.chmod(ssh / "sshkit", 0o775)
    key = ssh / "sshkit" / "default" / "id_container"
    key.write_bytes(PRIVATE)
    os.chmod(key, 0o644)
    config = ssh / "config"
    config.write_text("Host x\n  HostName y\n")
    os.chmod(config, 0o664)
    pub = ssh / "id_ed25519.pub"
    pub.write_text("ssh-ed25519 AAAA me\n")
    os.chmod(pub, 0o644)
    ppk = ssh / "key.ppk"
    ppk.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    os.chmod(ppk, 0o640)
    return ssh


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        ("private key", 0o644, 0o600),
        ("private key", 0o640, 0o600),
        ("private key", 0o400, 0o400),
        ("private key", 0o777, 0o700),
        ("config", 0o664, 0o644),
        ("config", 0o666, 0o644),
        ("config", 0o640, 0o640),
        ("config", 0o600, 0o600),
        ("directory", 0o755, 0o700),
        ("directory", 0o700, 0o700),
        ("subdirectory", 0o775, 0o755),
    ],
)
def test_wanted_mode(kind: str, before: int, after: int) -> None:
    assert wanted_mode(kind, before) == after


def test_check_reports_without_changing(messy_ssh: Path) -> None:
    issues = check_permissions()
    found = {(i.path.relative_to(messy_ssh).as_posix(), i.kind, i.mode, i.wanted) for i in issues}
    assert found == {
        (".", "directory", 0o755, 0o700),
        ("sshkit", "subdirectory", 0o775, 0o755),
        ("config", "config", 0o664, 0o644),
        ("sshkit/default/id_container", "private key", 0o644, 0o600),
        ("key.ppk", "private key", 0o640, 0o600),
    }
    assert mode(messy_ssh / "config") == 0o664  # unchanged


def test_fix_then_check_is_clean(messy_ssh: Path) -> None:
    changes = fix_permissions()
    assert len(changes) == 5
    assert mode(messy_ssh) == 0o700
    assert mode(messy_ssh / "config") == 0o644
    assert mode(messy_ssh / "sshkit" / "default" / "id_container") == 0o600
    assert mode(messy_ssh / "id_ed25519.pub") == 0o644  # public keys are left alone
    assert check_permissions() == []
    assert fix_permissions() == []


def test_explicit_paths(messy_ssh: Path, tmp_path: Path) -> None:
    key = tmp_path / "elsewhere" / "k"
    key.parent.mkdir()
    key.write_bytes(PRIVATE)
    os.chmod(key, 0o604)
    other = tmp_path / "cfg"
    other.write_text("x")
    os.chmod(other, 0o646)
    changes = fix_permissions([key, other])
    assert [(c.path, c.old, c.new) for c in changes] == [(key, 0o604, 0o600), (other, 0o646, 0o644)]
    assert mode(messy_ssh) == 0o755  # not asked about
    with pytest.raises(LocalFileError, match="does not exist"):
        check_permissions([tmp_path / "missing"])


def test_symlinks_in_ssh_dir_are_not_followed(messy_ssh: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-key"
    outside.write_bytes(PRIVATE)
    os.chmod(outside, 0o644)
    (messy_ssh / "linked").symlink_to(outside)
    fix_permissions()
    assert mode(outside) == 0o644


def test_is_private_key(tmp_path: Path) -> None:
    for text, expected in [
        (PRIVATE, True),
        (b"  -----BEGIN RSA PRIVATE KEY-----\n", True),
        (b"ssh-rsa AAAA\n", False),
        (b"", False),
    ]:
        path = tmp_path / "f"
        path.write_bytes(text)
        assert is_private_key(path) is expected


def test_icacls_command_for_a_key_and_a_directory() -> None:
    assert icacls_command(r"C:\Users\me\.ssh\id_container", user="me") == [
        "icacls",
        r"C:\Users\me\.ssh\id_container",
        "/inheritance:r",
        "/grant:r",
        "me:(F)",
        "/grant:r",
        "*S-1-5-18:(F)",
        "/grant:r",
        "*S-1-5-32-544:(F)",
        "/remove:g",
        "*S-1-1-0",
        "*S-1-5-11",
        "*S-1-5-32-545",
    ]
    argv = icacls_command(r"C:\Users\me\.ssh", user=r"DOMAIN\me", directory=True)
    assert r"DOMAIN\me:(OI)(CI)(F)" in argv and "*S-1-5-18:(OI)(CI)(F)" in argv
    with pytest.raises(LocalFileError):
        icacls_command("x", user="")
    with pytest.raises(LocalFileError):
        icacls_command("x", user='me" /grant Everyone:F "')


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_check_then_fix(messy_ssh: Path) -> None:
    check = run_cli("fix-perms", "--check")
    assert check.returncode == ExitCode.CHECK_FAILED
    assert "id_container: private key is 0644, should be 0600" in check.stdout
    assert "config: config is 0664, should be 0644" in check.stdout
    assert check.stderr.startswith("sshkit: error: 5 permission problem(s) found")
    assert mode(messy_ssh / "config") == 0o664
    fixed = run_cli("fix-perms")
    assert fixed.returncode == 0
    assert "config 0664 -> 0644" in fixed.stdout and "private key 0644 -> 0600" in fixed.stdout
    again = run_cli("fix-perms", "--check")
    assert again.returncode == 0 and "fine" in again.stdout


def test_ssh_accepts_the_key_only_after_the_fix(messy_ssh: Path) -> None:
    """OpenSSH itself is the judge: it refuses a world-writable included config."""
    config = messy_ssh / "config"
    os.chmod(config, 0o666)
    before = subprocess.run(["ssh", "-F", str(config), "-G", "x"], capture_output=True, text=True)
    # -F is not permission-checked (spec §6.7); an Include'd file is.
    wrapper = messy_ssh / "wrapper.conf"
    wrapper.write_text(f"Include {config}\n")
    os.chmod(wrapper, 0o600)
    included = subprocess.run(
        ["ssh", "-F", str(wrapper), "-G", "x"], capture_output=True, text=True
    )
    assert before.returncode == 0
    assert included.returncode != 0
    assert "Bad owner or permissions" in included.stderr
    fix_permissions()
    included = subprocess.run(
        ["ssh", "-F", str(wrapper), "-G", "x"], capture_output=True, text=True
    )
    assert included.returncode == 0, included.stderr
