"""Issue #12: sshkit against each release profile, end to end (real ssh, real sshd).

setup-vscode + `ssh bai-vscode` + doctor at 23.09, 24.09, 26.3 (session info 500) and
26.8, in both modes; fetch-key on Kubernetes agents; login with TOTP, the login cap and a
wrong password; keypair validation, rate limit and ambiguous names as one-line errors;
waiting for a session that is still starting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sshkit.api.client import BackendClient
from sshkit.cli._errors import report
from sshkit.errors import ExitCode, RejectedError
from sshkit.settings import load_connection
from tests.emulator.totp import totp
from tests.emulator_fixture import Emulator, EmulatorFactory

SSHKIT = Path(sys.executable).parent / "sshkit"
VERSIONS = ["23.09", "24.09", "26.3", "26.8"]


def run(
    *args: str, env: dict[str, str], stdin: bytes = b"", timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SSHKIT), *args], input=stdin, capture_output=True, timeout=timeout, env=env
    )


def api_env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    env.update(
        SSHKIT_ENDPOINT=emu.manager_url,
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY=emu.access_key,
        SSHKIT_SECRET_KEY=emu.secret_key,
    )
    return env


def login_args(emu: Emulator, *extra: str) -> list[str]:
    return [
        "login",
        "--endpoint",
        emu.webserver_url,
        "--endpoint-type",
        "session",
        "--username",
        emu.username,
        "--password-stdin",
        *extra,
    ]


def session_env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    done = run(*login_args(emu), env=env, stdin=emu.password.encode())
    assert done.returncode == 0, done.stderr.decode()
    return env


def errors(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("sshkit: error:")]


def ssh(
    config: Path, host: str, command: str, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", host, command],
        capture_output=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("mode", ["api", "session"])
@pytest.mark.parametrize("version", VERSIONS)
def test_setup_vscode_ssh_and_doctor(
    emulator_factory: EmulatorFactory, version: str, mode: str
) -> None:
    emu = emulator_factory(server_version=version)
    env = api_env(emu) if mode == "api" else session_env(emu)
    setup = run("setup-vscode", emu.session, "--yes", "--user", emu.ssh_user, env=env)
    assert setup.returncode == 0, setup.stderr.decode()
    config = Path(os.environ["HOME"]) / ".ssh" / "config"
    text = config.read_text()
    assert "ConnectTimeout 60" in text and "ServerAliveInterval 10" in text
    if version == "26.3":
        # No id to pin by: pinned by name, and said so.
        assert "pinned by name" in setup.stderr.decode()
        assert f"HostKeyAlias {emu.session}.sshkit" in text
    else:
        assert "pinned by name" not in setup.stderr.decode()
    done = ssh(config, "bai-vscode", "echo ok", env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"ok\n"
    doctor = run("doctor", "bai-vscode", env=env)
    assert doctor.returncode == 0, doctor.stdout.decode() + doctor.stderr.decode()


@pytest.mark.parametrize("version", ["26.3", "26.8"])
def test_fetch_key_on_kubernetes(
    emulator_factory: EmulatorFactory, version: str, tmp_path: Path
) -> None:
    emu = emulator_factory(server_version=version, extra_args=("--kubernetes",))
    env = api_env(emu)
    out = tmp_path / "key"
    done = run("fetch-key", emu.session, "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert out.stat().st_mode & 0o777 == 0o600
    # The key works against the session's sshd.
    host, port = emu.sshd_addr()
    login = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-i", str(out),
         "-p", str(port), f"{emu.ssh_user}@{host}", "echo k8s"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert login.stdout == b"k8s\n", login.stderr
    # Pushing keys into a session there cannot work: said plainly, nothing uploaded.
    pub = tmp_path / "me.pub"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(pub)[:-4]], check=True)
    push = run(
        "push-authorized-keys", "--to", "session", "--session", emu.session,
        "--key", pub.read_text().strip(), "--yes", env=env,
    )  # fmt: skip
    assert push.returncode == ExitCode.REJECTED
    assert "Kubernetes" in errors(push)[0] and "ConfigMap" in errors(push)[0]


# --- login ---


@pytest.mark.parametrize("version", ["26.3", "26.8"])
def test_wrong_password(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    bad = run(*login_args(emu), env=env, stdin=b"not-the-password")
    assert bad.returncode == ExitCode.AUTH
    assert errors(bad) == [
        f"sshkit: error: login as {emu.username} failed: wrong user name or password"
    ]
    assert "log in again" not in bad.stderr.decode()
    assert "SSO" in bad.stderr.decode()  # the hint for accounts without a password


def test_totp_login(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(extra_args=("--totp",))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    missing = run(*login_args(emu), env=env, stdin=emu.password.encode())
    assert missing.returncode == ExitCode.AUTH
    (line,) = errors(missing)
    assert "one-time code" in line and "--otp" in line
    code = totp(emu.info["totp_secret"], time.time())
    done = run(*login_args(emu, "--otp", code), env=env, stdin=emu.password.encode())
    assert done.returncode == 0, done.stderr.decode()
    who = run("whoami", env=env)
    assert who.returncode == 0, who.stderr.decode()


def test_login_cap(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(extra_args=("--max-concurrent-logins", "1"), fresh=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
        first = run(*login_args(emu, "--profile", "one"), env=env, stdin=emu.password.encode())
        assert first.returncode == 0, first.stderr.decode()
        capped = run(*login_args(emu, "--profile", "two"), env=env, stdin=emu.password.encode())
        assert capped.returncode == ExitCode.AUTH
        (line,) = errors(capped)
        assert "limit of concurrent logins" in line and "--force" in line
        forced = run(
            *login_args(emu, "--profile", "two", "--force"), env=env, stdin=emu.password.encode()
        )
        assert forced.returncode == 0, forced.stderr.decode()
        assert run("whoami", "--profile", "two", env=env).returncode == 0
    finally:
        emu.stop()


# --- one-line errors ---


def test_keypair_validation_400_is_one_line(
    emulator_factory: EmulatorFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory(server_version="26.3")
    client = BackendClient.from_connection(load_connection(environ=api_env(emu)))
    key = tmp_path / "k"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-m", "PEM", "-f", str(key)],
        check=True,
    )
    other = tmp_path / "o"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(RejectedError) as info:
        client.set_ssh_keypair(other.with_suffix(".pub").read_text(), key.read_text())
    assert info.value.status == 400 and info.value.error_code
    assert report(info.value) == ExitCode.REJECTED
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("sshkit: error: uploading the SSH keypair failed: HTTP 400")
    assert "does not match" in err[0] and f"[{info.value.error_code}]" in err[0]
    assert len([ln for ln in err if ln.startswith("sshkit: error:")]) == 1


def test_rate_limit_is_one_line_without_retry(emulator: Emulator, tmp_path: Path) -> None:
    emulator.hook("DELETE", "requests")
    emulator.hook("POST", "faults", {"kind": "rate_limit"})
    try:
        out = run("fetch-key", emulator.session, "-o", str(tmp_path / "k"), env=api_env(emulator))
    finally:
        emulator.hook("DELETE", "faults")
    assert out.returncode == ExitCode.REJECTED
    (line,) = errors(out)
    assert "rate limit" in line and "HTTP 429" in line
    assert "wait up to 15 minutes (900 s)" in out.stderr.decode()
    calls = [r for r in emulator.hook("GET", "requests") if "/download" in r["path"]]
    assert len(calls) == 1  # never retried
    assert not (tmp_path / "k").exists()


def test_too_many_sessions_matched_is_one_line(emulator: Emulator, tmp_path: Path) -> None:
    name = f"twin-{uuid.uuid4().hex[:8]}"
    ids = [emulator.hook("POST", "sessions", {"name": name})["id"] for _ in range(2)]
    try:
        out = run("setup-vscode", name, "--yes", env=api_env(emulator))
        assert out.returncode == ExitCode.NOT_FOUND
        (line,) = errors(out)
        assert "2 sessions have that name" in line and all(i in line for i in ids)
        assert "by its id" in out.stderr.decode()
        by_id = run("fetch-key", ids[0], "-o", str(tmp_path / "k"), env=api_env(emulator))
        assert by_id.returncode == 0, by_id.stderr.decode()
    finally:
        for sid in ids:
            emulator.hook("DELETE", f"sessions/{sid}")


# --- sessions that are still starting ---


def test_setup_vscode_waits_for_a_starting_session(emulator: Emulator) -> None:
    name = f"later-{uuid.uuid4().hex[:8]}"
    emulator.hook("POST", "sessions", {"name": name, "status": "PREPARING", "ready_after": 3})
    try:
        env = api_env(emulator)
        done = run("setup-vscode", name, "--yes", "--user", emulator.ssh_user, env=env)
        assert done.returncode == 0, done.stderr.decode()
        waiting = [ln for ln in done.stderr.decode().splitlines() if "waiting up to 120 s" in ln]
        assert len(waiting) == 1 and "PREPARING" in waiting[0]
    finally:
        for item in emulator.hook("GET", "sessions"):
            if item["name"] == name:
                emulator.hook("DELETE", f"sessions/{item['id']}")


def test_ssh_reports_a_session_that_does_not_start(emulator: Emulator) -> None:
    name = f"never-{uuid.uuid4().hex[:8]}"
    emulator.hook("POST", "sessions", {"name": name, "status": "PENDING"})
    try:
        start = time.monotonic()
        out = run("ssh", name, "--wait", "2", "--", "true", env=api_env(emulator))
        assert time.monotonic() - start < 30
        assert out.returncode == ExitCode.NOT_FOUND
        (line,) = errors(out)
        assert f"session '{name}' is still PENDING after 2 s: not running yet" in line
    finally:
        for item in emulator.hook("GET", "sessions"):
            if item["name"] == name:
                emulator.hook("DELETE", f"sessions/{item['id']}")


@pytest.mark.parametrize("mode", ["api", "session"])
def test_wildcard_ssh_waits_for_a_session_starting_5_s_later(
    emulator_factory: EmulatorFactory, mode: str
) -> None:
    """`ssh S.bai true` through the wildcard block setup-vscode wrote (the relay waits)."""
    emu = emulator_factory(server_version="26.8")
    env = api_env(emu) if mode == "api" else session_env(emu)
    setup = run("setup-vscode", emu.session, "--yes", "--user", emu.ssh_user, env=env)
    assert setup.returncode == 0, setup.stderr.decode()
    config = Path(os.environ["HOME"]) / ".ssh" / "config"
    name = f"soon-{uuid.uuid4().hex[:8]}"
    emu.hook("POST", "sessions", {"name": name, "status": "PREPARING", "ready_after": 5})
    try:
        start = time.monotonic()
        done = ssh(config, f"{name}.bai", "true", env)
        assert done.returncode == 0, done.stderr.decode()
        assert time.monotonic() - start >= 4
        lines = [ln for ln in done.stderr.decode().splitlines() if ln.startswith("sshkit:")]
        assert len(lines) == 1 and "PREPARING; waiting up to 10 s" in lines[0], lines
    finally:
        for item in emu.hook("GET", "sessions"):
            if item["name"] == name:
                emu.hook("DELETE", f"sessions/{item['id']}")


@pytest.mark.parametrize("version", ["23.09", "26.3"])
def test_one_shot_ssh(emulator_factory: EmulatorFactory, version: str) -> None:
    emu = emulator_factory(server_version=version)
    env = session_env(emu)
    done = run("ssh", emu.session, "--user", emu.ssh_user, "--", "echo one-shot", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"one-shot\n"


@pytest.mark.parametrize("version", ["23.09", "26.8"])
def test_bai_vscode_never_hangs_in_session_mode(
    emulator_factory: EmulatorFactory, version: str
) -> None:
    """The blocks setup-vscode writes, with the relay's default --timeout (10 s)."""
    emu = emulator_factory(server_version=version)
    env = session_env(emu)
    config = Path(os.environ["HOME"]) / ".ssh" / "config"
    name = f"vs-{uuid.uuid4().hex[:8]}"
    sid = emu.hook("POST", "sessions", {"name": name})["id"]
    prep = f"prep-{uuid.uuid4().hex[:8]}"
    try:
        setup = run("setup-vscode", name, "--yes", "--user", emu.ssh_user, env=env)
        assert setup.returncode == 0, setup.stderr.decode()
        assert ssh(config, "bai-vscode", "true", env).returncode == 0

        def attempt(host: str) -> tuple[str, float]:
            start = time.monotonic()
            done = ssh(config, host, "true", env)
            took = time.monotonic() - start
            assert done.returncode != 0 and done.stdout == b""
            (line,) = errors(done)
            return line, took

        emu.hook("POST", "faults", {"kind": "refuse_sshd", "session": name})
        line, took = attempt("bai-vscode")
        assert f"the sshd of session '{name}' is not answering" in line and took < 10 + 5 + 3
        emu.hook("DELETE", "faults")

        emu.hook("POST", "sessions", {"name": prep, "status": "PREPARING"})
        line, took = attempt(f"{prep}.bai")
        assert f"session '{prep}' is still PREPARING after 10 s" in line and took < 10 + 5 + 3

        emu.hook("DELETE", f"sessions/{sid}")
        line, took = attempt("bai-vscode")
        assert f"session '{name}' not found" in line and took < 10 + 5
    finally:
        emu.hook("DELETE", "faults")
        for item in emu.hook("GET", "sessions"):
            if item["name"] in (name, prep):
                emu.hook("DELETE", f"sessions/{item['id']}")


def test_totp_prompt_in_a_terminal(emulator_factory: EmulatorFactory) -> None:
    import pty
    import select

    emu = emulator_factory(extra_args=("--totp",))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHKIT_")}
    env["SSHKIT_PASSWORD"] = emu.password
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(SSHKIT), *login_args(emu)[:-1]],  # no --password-stdin
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        seen = b""
        deadline = time.monotonic() + 60
        while b"One-time code" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                seen += os.read(master, 4096)
        assert b"One-time code" in seen, seen
        os.write(master, totp(emu.info["totp_secret"], time.time()).encode() + b"\n")
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 4096)
        proc.wait(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, seen
    assert b"Logged in" in seen
