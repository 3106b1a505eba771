"""`sshkit ssh` / `sshkit scp`: one-shot connections that write nothing to ~/.ssh/config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.services.oneshot import scp_sessions
from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SSHKIT), *args], capture_output=True, timeout=180, env=env, stdin=subprocess.DEVNULL
    )


def test_scp_sessions_parsing() -> None:
    assert scp_sessions(["-r", "a.txt", "work@sess1:/x", "sess2:y", "./c:d", "/abs:x"]) == [
        "sess1",
        "sess2",
    ]


def test_ssh_one_shot(emulator: Emulator, api_env: dict[str, str]) -> None:
    proc = run(
        "ssh", "--user", emulator.ssh_user, emulator.session, "--", "echo one-shot", env=api_env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"one-shot\n"
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    assert not (ssh_dir / "config").exists()
    # the exit status of the remote command comes back
    proc = run("ssh", "--user", emulator.ssh_user, emulator.session, "--", "exit 7", env=api_env)
    assert proc.returncode == 7


def test_scp_one_shot(emulator: Emulator, api_env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(50_000))
    dst = tmp_path / "copied.bin"
    proc = run(
        "scp", "--user", emulator.ssh_user, str(src), f"{emulator.session}:{dst}", env=api_env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert dst.read_bytes() == src.read_bytes()
    assert not (Path(os.environ["HOME"]) / ".ssh" / "config").exists()


def test_ssh_one_shot_missing_session(emulator: Emulator, api_env: dict[str, str]) -> None:
    proc = run("ssh", "no-such-session", "--", "true", env=api_env)
    assert proc.returncode == 5
    assert proc.stderr.decode().startswith("sshkit: error: ")
