"""`sshkit setup-vscode` end to end against the emulator, with the real ssh, scp and sftp.

HOME is a temporary directory (conftest). OpenSSH finds ~/.ssh/config through the passwd
database, not $HOME (spec §6.3), so the tests pass `-F $HOME/.ssh/config` to reach the file
sshkit wrote; for a real user both are the same file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


def run(*args: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SSHKIT), *args], input=stdin, capture_output=True, timeout=180, env=env
    )


def home() -> Path:
    return Path(os.environ["HOME"])


def ssh(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", *args],
        capture_output=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def set_up(emulator: Emulator, api_env: dict[str, str]) -> Path:
    ssh_dir = home() / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    config = ssh_dir / "config"
    original = (
        Path(__file__).parent / "ssh_configs" / "20-seed-guide-under-star.conf"
    ).read_bytes()
    config.write_bytes(original)
    os.chmod(config, 0o644)
    proc = run("setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    return config


def test_plain_ssh_scp_sftp_work(
    set_up: Path, emulator: Emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    config = set_up
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # mode kept
    text = config.read_text()
    assert "#sshkit-disabled bai-vscode: Host bai-vscode" in text  # the seed-guide block
    key = home() / ".ssh" / "sshkit" / "default" / "id_container"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    proc = ssh(config, "bai-vscode", "echo ok", env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"ok\n"
    # accept-new pinned the container's host key in sshkit's own known_hosts
    known = (home() / ".ssh" / "sshkit" / "known_hosts").read_text()
    assert f"{emulator.session}." in known and ".sshkit" in known

    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(100_000))
    remote = tmp_path / "remote-copy.bin"
    scp = subprocess.run(
        ["scp", "-F", str(config), "-o", "BatchMode=yes", str(src), f"bai-vscode:{remote}"],
        capture_output=True,
        timeout=120,
        env=api_env,
    )
    assert scp.returncode == 0, scp.stderr.decode()
    assert remote.read_bytes() == src.read_bytes()

    back = tmp_path / "down.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"get {remote} {back}\nls {tmp_path}\n")
    sftp = subprocess.run(
        ["sftp", "-F", str(config), "-o", "BatchMode=yes", "-b", str(batch), "bai-vscode"],
        capture_output=True,
        timeout=120,
        env=api_env,
    )
    assert sftp.returncode == 0, sftp.stderr.decode()
    assert back.read_bytes() == src.read_bytes()


def test_session_started_later_reachable_by_suffix(
    set_up: Path, emulator: Emulator, api_env: dict[str, str]
) -> None:
    created = emulator.hook("POST", "sessions", {"name": "newsess"})
    try:
        proc = ssh(set_up, "-l", emulator.ssh_user, "newsess.bai", "echo later", env=api_env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"later\n"
    finally:
        emulator.hook("DELETE", f"sessions/{created['name']}")


def test_rerun_is_byte_identical_and_remove_restores(
    set_up: Path, emulator: Emulator, api_env: dict[str, str]
) -> None:
    first = set_up.read_bytes()
    proc = run("setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert set_up.read_bytes() == first

    listed = run("hosts", "list", "--json", env=api_env)
    assert listed.returncode == 0, listed.stderr.decode()
    entries = json.loads(listed.stdout)
    assert {(e["alias"], e["session"], e["config"]) for e in entries} == {
        ("bai-vscode", emulator.session, str(set_up)),
        ("*.bai", None, str(set_up)),
    }
    proc = run("hosts", "remove", "bai-vscode", "*.bai", env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    original = (
        Path(__file__).parent / "ssh_configs" / "20-seed-guide-under-star.conf"
    ).read_bytes()
    assert set_up.read_bytes() == original
    assert stat.S_IMODE(set_up.stat().st_mode) == 0o644


def test_dry_run_changes_nothing(emulator: Emulator, api_env: dict[str, str]) -> None:
    proc = run("setup-vscode", emulator.session, "--dry-run", env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.startswith("--- /dev/null\n+++ ")
    assert "+Host bai-vscode\n" in out and "+Host *.bai\n" in out
    assert not (home() / ".ssh").exists()


def test_handwritten_block_needs_consent_without_a_terminal(
    emulator: Emulator, api_env: dict[str, str]
) -> None:
    ssh_dir = home() / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    config = ssh_dir / "config"
    original = (
        Path(__file__).parent / "ssh_configs" / "19-seed-guide-handwritten.conf"
    ).read_bytes()
    config.write_bytes(original)
    proc = run("setup-vscode", emulator.session, env=api_env)
    assert proc.returncode == 2, proc.stderr.decode()
    assert b"--yes" in proc.stderr
    assert config.read_bytes() == original


def test_missing_session_is_one_clear_error(emulator: Emulator, api_env: dict[str, str]) -> None:
    proc = run("setup-vscode", "no-such-session", "--yes", env=api_env)
    assert proc.returncode == 5, proc.stderr.decode()
    assert proc.stderr.decode().startswith("sshkit: error: ")
    assert not (home() / ".ssh" / "config").exists()


def test_not_logged_in(api_env: dict[str, str]) -> None:
    env = {k: v for k, v in api_env.items() if not k.startswith("SSHKIT_")}
    proc = run("setup-vscode", "s", "--yes", env=env)
    assert proc.returncode == 3
    assert not (home() / ".ssh" / "config").exists()


def test_ppk_and_vscode_settings(emulator: Emulator, api_env: dict[str, str]) -> None:
    settings = home() / ".config" / "Code" / "User" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('// mine\n{\n    "editor.fontSize": 13, // big\n}\n')
    env = dict(api_env, XDG_CONFIG_HOME=str(home() / ".config"))
    proc = run(
        "setup-vscode", emulator.session, "--yes", "--ppk", "--user", emulator.ssh_user, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    text = settings.read_text()
    assert "// mine" in text and "// big" in text
    assert '"remote.SSH.remotePlatform": {"bai-vscode": "linux"}' in text
    ppk = home() / ".ssh" / "sshkit" / "default" / "id_container.ppk"
    assert ppk.read_bytes().startswith(b"PuTTY-User-Key-File-3: ")
    if shutil.which("puttygen"):
        fp_ppk = subprocess.run(
            ["puttygen", str(ppk), "-l", "-E", "sha256"], capture_output=True, text=True, check=True
        ).stdout.split()[2]
        fp_key = subprocess.run(
            ["ssh-keygen", "-lf", str(ppk.with_suffix(""))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        assert fp_ppk == fp_key


def test_identity_option_and_open(
    emulator: Emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    """--identity uses a given key (no download); --open starts `code --remote ...`."""
    # the server's keypair is the container key: take it from a first set-up, then move it
    first = run("setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, env=api_env)
    assert first.returncode == 0, first.stderr.decode()
    own = tmp_path / "my keys" / "id_work"
    own.parent.mkdir()
    os.replace(home() / ".ssh" / "sshkit" / "default" / "id_container", own)
    os.chmod(own, 0o644)  # setup-vscode fixes it
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "code.log"
    fake_code = bindir / "code"
    fake_code.write_text(f'#!/bin/sh\necho "$@" > "{log}"\n')
    fake_code.chmod(0o755)
    env = dict(api_env, PATH=f"{bindir}{os.pathsep}{api_env['PATH']}")
    proc = run(
        "setup-vscode",
        emulator.session,
        "--yes",
        "--user",
        emulator.ssh_user,
        "--identity",
        str(own),
        "--open",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert not (home() / ".ssh" / "sshkit" / "default" / "id_container").exists()
    config = home() / ".ssh" / "config"
    assert f'IdentityFile "{own}"' in config.read_text()
    done = ssh(config, "bai-vscode", "echo ok", env=api_env)
    assert done.returncode == 0, done.stderr.decode()
    for _ in range(50):
        if log.exists():
            break
        import time

        time.sleep(0.1)
    assert log.read_text().split() == ["--remote", "ssh-remote+bai-vscode", "/home/work"]


@pytest.mark.parametrize(("answer", "written"), [(b"n\n", False), (b"y\n", True)])
def test_asks_in_a_terminal(
    emulator: Emulator, api_env: dict[str, str], answer: bytes, written: bool
) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(SSHKIT), "setup-vscode", emulator.session, "--user", emulator.ssh_user],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=api_env,
        )
        os.write(master, answer)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert b"+Host bai-vscode" in out  # the diff is shown before the question
    assert b"Apply these changes?" in err
    assert (proc.returncode == 0) is written, err.decode()
    assert (home() / ".ssh" / "config").exists() is written


@pytest.mark.parametrize("server_version", ["23.09", "26.3"])
def test_session_mode_login_with_a_named_profile(
    emulator_factory, server_version: str, tmp_path: Path
) -> None:
    """A stored session-mode login (the webserver) under --profile: the ProxyCommand carries it."""
    emu = emulator_factory(server_version=server_version)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    login = run(
        "login",
        "--endpoint",
        emu.webserver_url,
        "--endpoint-type",
        "session",
        "--username",
        emu.username,
        "--password-stdin",
        "--profile",
        "lab",
        env=env,
        stdin=emu.password.encode(),
    )
    assert login.returncode == 0, login.stderr.decode()
    proc = run(
        "setup-vscode",
        emu.session,
        "--yes",
        "--user",
        emu.ssh_user,
        "--profile",
        "lab",
        "--alias",
        "lab-vscode",
        "--suffix",
        ".lab",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    config = home() / ".ssh" / "config"
    text = config.read_text()
    assert "relay --profile lab -- %h" in text
    assert "relay --profile lab --suffix .lab -- %h" in text
    assert (home() / ".ssh" / "sshkit" / "lab" / "id_container").is_file()
    done = ssh(config, "lab-vscode", "echo lab", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"lab\n"
    doctor = run("doctor", "lab-vscode", "--profile", "lab", env=env)
    assert doctor.returncode == 0, doctor.stdout.decode() + doctor.stderr.decode()


def test_dropbear_session(emulator_factory) -> None:
    """Sessions whose sshd is dropbear (as in some Backend.AI images) work the same way."""
    emu = emulator_factory(sshd="dropbear")
    env = dict(os.environ)
    env.update(
        SSHKIT_ENDPOINT=emu.manager_url,
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY=emu.access_key,
        SSHKIT_SECRET_KEY=emu.secret_key,
    )
    proc = run("setup-vscode", emu.session, "--yes", "--user", emu.ssh_user, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    config = home() / ".ssh" / "config"
    done = ssh(config, "bai-vscode", "echo dropbear", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"dropbear\n"
    doctor = run("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout.decode() + doctor.stderr.decode()


def test_group_writable_config_is_fixed(emulator: Emulator, api_env: dict[str, str]) -> None:
    """OpenSSH refuses a group/world-writable ~/.ssh/config: setup-vscode fixes that mode."""
    ssh_dir = home() / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    config = ssh_dir / "config"
    config.write_bytes(b"Host web\n    HostName web.example.com\n")
    os.chmod(config, 0o666)
    proc = run("setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, env=api_env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert b"fixed permissions" in proc.stderr
