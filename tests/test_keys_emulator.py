"""A session key taken through PPK and back logs in to the emulated session's real sshd."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.formats.keys import load_private_key
from tests.emulator_fixture import Emulator
from tests.ppk_vectors import VECTORS, private_copy

SSH = shutil.which("ssh")


def _sshkit(*args: str | Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sshkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(SSH is None, reason="ssh is not installed")
def test_key_converted_to_ppk_and_back_logs_in_with_real_ssh(
    emulator: Emulator, tmp_path: Path
) -> None:
    assert SSH is not None
    sessions = emulator.hook("GET", "sessions")
    session = next(s for s in sessions if s["name"] == emulator.session)
    container_key = Path(session["home"]) / "id_container"
    src = private_copy(container_key, tmp_path, "id_container")

    new_pass = tmp_path / "pass.txt"
    new_pass.write_bytes(b"session key passphrase\n")
    ppk_path = tmp_path / "id_container.ppk"
    _sshkit("to-ppk", src, "--new-passphrase-file", new_pass)  # encrypted PPK, as for PuTTY
    back = tmp_path / "from_ppk"
    _sshkit("from-ppk", ppk_path, "-o", back, "--passphrase-file", new_pass, "--no-passphrase")
    assert load_private_key(back.read_bytes()) == load_private_key(src.read_bytes()).with_comment(
        "imported-openssh-key"
    )

    ok = _ssh(emulator, back, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "sshkit-ppk-login-ok"
    # Control: a key the session does not trust is refused by the same command.
    stranger = private_copy(VECTORS / "openssh" / "ed25519", tmp_path, "stranger")
    assert _ssh(emulator, stranger, tmp_path).returncode == 255


def _ssh(emulator: Emulator, identity: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert SSH is not None
    host, port = emulator.sshd_addr()
    return subprocess.run(
        [
            SSH, "-F", "/dev/null", "-i", str(identity), "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
            "-o", "ConnectTimeout=20",
            f"{emulator.ssh_user}@{host}", "echo sshkit-ppk-login-ok",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
