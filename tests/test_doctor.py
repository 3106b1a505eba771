"""`sshkit doctor` against the emulator: passes on a good set-up, names the cause otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def home() -> Path:
    return Path(os.environ["HOME"])


def key_path() -> Path:
    return home() / ".ssh" / "sshkit" / "default" / "id_container"


def setup(emulator: Emulator, env: dict[str, str], session: str | None = None) -> None:
    proc = run(
        "setup-vscode", session or emulator.session, "--yes", "--user", emulator.ssh_user, env=env
    )
    assert proc.returncode == 0, proc.stderr


def lines_of(out: str) -> dict[str, str]:
    """check name -> its line (and the fix line after it)."""
    found: dict[str, str] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line[:2] in ("✓ ", "✗ ", "- "):
            name = line[2:].split(":", 1)[0]
            nxt = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("    fix:") else ""
            found[name] = line + "\n" + nxt
    return found


def pin_by_connecting(env: dict[str, str]) -> str:
    """Connect once with plain ssh, which pins the host key (accept-new); return the alias."""
    config = home() / ".ssh" / "config"
    proc = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "bai-vscode", "true"],
        capture_output=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    known = (home() / ".ssh" / "sshkit" / "known_hosts").read_text()
    return known.split()[0]


def test_doctor_passes_on_a_good_setup(emulator: Emulator, api_env: dict[str, str]) -> None:
    setup(emulator, api_env)
    pin_by_connecting(api_env)
    proc = run("doctor", env=api_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = lines_of(proc.stdout)
    assert set(checks) == {
        "login",
        "endpoint",
        "ssh config",
        "key file",
        "key matches server",
        "permissions",
        "ssh -G",
        "session",
        "ssh handshake",
    }
    assert all(v.startswith("✓") for v in checks.values()), proc.stdout


def test_doctor_names_a_0644_key(emulator: Emulator, api_env: dict[str, str]) -> None:
    setup(emulator, api_env)
    os.chmod(key_path(), 0o644)
    proc = run("doctor", env=api_env)
    assert proc.returncode == 14
    line = lines_of(proc.stdout)["key file"]
    assert line.startswith("✗") and "0644" in line and "chmod 600" in line
    assert "check(s) failed: key file" in proc.stderr


def test_doctor_names_a_host_star_overriding_the_proxycommand(
    emulator: Emulator, api_env: dict[str, str]
) -> None:
    setup(emulator, api_env)
    config = home() / ".ssh" / "config"
    config.write_text("Host *\n    ProxyCommand /usr/bin/nc corp-proxy 3128\n" + config.read_text())
    proc = run("doctor", env=api_env)
    assert proc.returncode == 14
    line = lines_of(proc.stdout)["ssh -G"]
    assert line.startswith("✗ ssh -G: proxycommand is '/usr/bin/nc corp-proxy 3128'")
    assert "line 2 of" in line and "`Host *` (line 1)" in line
    assert "fix: OpenSSH uses the first value" in line


def test_doctor_names_a_key_that_is_not_the_servers(
    emulator: Emulator, api_env: dict[str, str]
) -> None:
    setup(emulator, api_env)
    key = key_path()
    key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proc = run("doctor", env=api_env)
    assert proc.returncode == 14
    checks = lines_of(proc.stdout)
    assert checks["key matches server"].startswith("✗")
    assert "is not the server's SSH keypair" in checks["key matches server"]
    assert checks["ssh handshake"].startswith("✗")
    assert "refused the key" in checks["ssh handshake"]


def test_doctor_names_a_terminated_session(emulator: Emulator, api_env: dict[str, str]) -> None:
    created = emulator.hook("POST", "sessions", {"name": "doomed"})
    setup(emulator, api_env, created["name"])
    emulator.hook("DELETE", "sessions/doomed")
    proc = run("doctor", env=api_env)
    assert proc.returncode == 14
    checks = lines_of(proc.stdout)
    assert checks["session"].startswith("✗ session: session doomed does not exist (terminated?)")
    assert checks["ssh handshake"].startswith("- ")

    # and prune removes exactly that block
    pruned = run("hosts", "prune", "--yes", env=api_env)
    assert pruned.returncode == 0, pruned.stderr
    assert "bai-vscode: session doomed no longer exists" in pruned.stdout
    listed = run("hosts", "list", env=api_env)
    assert "*.bai" in listed.stdout and "bai-vscode" not in listed.stdout


def test_doctor_without_login_or_block(api_env: dict[str, str]) -> None:
    env = {k: v for k, v in api_env.items() if not k.startswith("SSHKIT_")}
    proc = run("doctor", env=env)
    assert proc.returncode == 14
    checks = lines_of(proc.stdout)
    assert checks["login"].startswith("✗")
    assert checks["ssh config"].startswith("✗") and "setup-vscode" in checks["ssh config"]


def test_doctor_names_a_changed_pinned_host_key(
    emulator: Emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    setup(emulator, api_env)
    alias = pin_by_connecting(api_env)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    (home() / ".ssh" / "sshkit" / "known_hosts").write_text(f"{alias} {fake}\n")
    proc = run("doctor", env=api_env)
    assert proc.returncode == 14
    line = lines_of(proc.stdout)["ssh handshake"]
    assert line.startswith("✗") and "differs from the one pinned" in line


def test_doctor_on_a_session_reached_through_the_wildcard(
    emulator: Emulator, api_env: dict[str, str]
) -> None:
    setup(emulator, api_env)
    created = emulator.hook("POST", "sessions", {"name": "s2"})
    try:
        proc = run("doctor", "s2.bai", env=api_env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checks = lines_of(proc.stdout)
        assert (
            "wildcard block *.bai" in checks["ssh config"]
            and "(session s2)" in checks["ssh config"]
        )
        assert checks["session"].startswith("✓ session: s2 is")
        assert checks["ssh handshake"].startswith("✓ ssh handshake:")
        assert "s2.bai true` logged in as" in checks["ssh handshake"]
        assert all(v.startswith("✓") for v in checks.values()), proc.stdout
    finally:
        emulator.hook("DELETE", f"sessions/{created['name']}")


def test_doctor_on_the_wildcard_pattern_asks_for_a_name(
    emulator: Emulator, api_env: dict[str, str]
) -> None:
    setup(emulator, api_env)
    emulator.hook("DELETE", "requests")
    proc = run("doctor", "*.bai", env=api_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = lines_of(proc.stdout)
    assert checks["ssh config"].startswith("✓ ssh config: sshkit wildcard block *.bai")
    assert "sshkit doctor NAME.bai" in checks["ssh config"]
    assert checks["session"].startswith("- session: skipped (a wildcard pattern names no session")
    assert checks["ssh handshake"].startswith("- ")
    paths = [entry["path"] for entry in emulator.hook("GET", "requests")]
    assert paths, "doctor should still check the login against the server"
    for path in paths:
        assert "%h" not in path and "%25h" not in path and "*" not in path and "%2A" not in path
