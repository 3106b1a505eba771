"""The CLI's contract beyond exit codes: --json documents, the user's own line numbers,
ssh's exit code passed through, doctor's verdict from the real ssh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.errors import ExitCode
from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def setup(emulator: Emulator, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    proc = run(
        "setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, *extra, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@needs_ssh
def test_the_hand_written_block_is_reported_at_its_own_lines(
    emulator: Emulator, api_env: dict[str, str], hermetic_home: Path
) -> None:
    config = hermetic_home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_text("Host bai-vscode\n  HostName old.example\n  User me\n")
    proc = setup(emulator, api_env)
    assert f"(lines 1-3 of {config})" in proc.stderr


def test_whoami_json(emulator: Emulator, api_env: dict[str, str]) -> None:
    proc = run("whoami", "--json", env=api_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["access_key"] == emulator.access_key
    assert doc["endpoint"] == emulator.manager_url and doc["endpoint_type"] == "api"
    assert {"profile", "username", "global_role", "api_version", "manager_version"} <= set(doc)
    assert emulator.secret_key not in proc.stdout


def test_config_show_json_masks_secrets() -> None:
    env = {**os.environ, "SSHKIT_ENDPOINT": "https://bai.example", "SSHKIT_SECRET_KEY": "s3cr3t"}
    proc = run("config", "show", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    settings = doc["settings"]
    assert settings["endpoint"] == {"value": "https://bai.example", "source": "env SSHKIT_ENDPOINT"}
    assert settings["secret_key"]["source"] == "env SSHKIT_SECRET_KEY"
    assert "s3cr3t" not in proc.stdout
    assert settings["username"] == {"value": None, "source": "not set"}
    assert doc["config_file"].endswith("config.toml")


@needs_ssh
def test_doctor_json_has_one_entry_per_check(emulator: Emulator, api_env: dict[str, str]) -> None:
    setup(emulator, api_env)
    proc = run("doctor", "--json", env=api_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["alias"] == "bai-vscode"
    names = [c["name"] for c in doc["checks"]]
    assert names[0] == "login" and names[-1] == "ssh handshake" and len(set(names)) == len(names)
    for check in doc["checks"]:
        assert set(check) == {"name", "ok", "status", "detail", "hint"}
        assert check["ok"] is True and check["hint"] is None
    # A failure: still one JSON document on stdout, exit 14 with its one line on stderr.
    key = Path(os.environ["HOME"]) / ".ssh" / "sshkit" / "default" / "id_container"
    key.chmod(0o644)
    proc = run("doctor", "--json", env=api_env)
    assert proc.returncode == ExitCode.CHECK_FAILED
    doc = json.loads(proc.stdout)
    (bad,) = [c for c in doc["checks"] if c["status"] == "fail"][:1]
    assert bad["name"] == "key file" and not bad["ok"] and "chmod 600" in bad["hint"]
    assert proc.stderr.startswith("sshkit: error: ")


@needs_ssh
def test_doctor_verdict_is_the_real_ssh(emulator: Emulator, api_env: dict[str, str]) -> None:
    """ssh fails where paramiko would not: doctor says so, and that paramiko got through."""
    setup(emulator, api_env)
    config = Path(os.environ["HOME"]) / ".ssh" / "config"
    with config.open("a") as fh:
        fh.write("\nHost *\n  Ciphers 3des-cbc\n")  # no cipher in common with sshd
    proc = run("doctor", env=api_env)
    assert proc.returncode == ExitCode.CHECK_FAILED, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("✗ ssh handshake"))
    assert f"ssh -F {config} -o BatchMode=yes bai-vscode true" in line
    assert "cipher" in line.lower()
    assert "got through banner, key exchange and authentication" in line


@needs_ssh
def test_scp_passes_scps_exit_code_through(
    emulator: Emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    proc = run(
        "scp", "--user", emulator.ssh_user, f"{emulator.session}:/no/such/file", str(tmp_path),
        env=api_env,
    )  # fmt: skip
    assert proc.returncode == 1  # scp's own code for a missing remote file
    assert "sshkit: error" not in proc.stderr  # ...so it is scp's, not sshkit's
