"""Fidelity: the official `backend.ai-client~=23.09` CLI against the emulator at 23.09.

The client is installed once into a cached venv under `.cache/` in the repo (pip
from the package registry). The test skips, saying why, only when that install is
impossible (no network); everywhere else a failure here is an emulator bug.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator_fixture import HERMETIC_SSH, REPO, Emulator, EmulatorFactory

VENV = REPO / ".cache" / "bai-client-23.09"
# yarl >= 1.17.1 breaks the 23.09 client's API-mode signing (spec §1.4).
REQUIREMENTS = ["backend.ai-client~=23.09", "yarl<=1.17.0"]
INSTALL_TIMEOUT = 900.0
STAMP = VENV / ".sshkit-installed"

pytestmark = pytest.mark.slow


def _install_client() -> Path:
    """Create the cached venv (under a lock: xdist workers or parallel runs may race)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "bai-client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exe = VENV / "bin" / "backend.ai"
        wanted = "\n".join(REQUIREMENTS)
        if STAMP.is_file() and STAMP.read_text() == wanted and exe.exists():
            return exe
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(VENV)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            subprocess.run(
                [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", *REQUIREMENTS],
                check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            out = exc.stderr or exc.stdout or ""
            tail = (out if isinstance(out, str) else out.decode(errors="replace"))[-600:]
            pytest.skip(f"cannot install {' '.join(REQUIREMENTS)} (no package registry?): {tail}")
        except subprocess.TimeoutExpired:
            pytest.skip(f"installing {' '.join(REQUIREMENTS)} took over {INSTALL_TIMEOUT:.0f}s")
        STAMP.write_text(wanted)
        return exe


@pytest.fixture(scope="module")
def bai_cli() -> Path:
    return _install_client()


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONWARNINGS="ignore",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def _run(
    cli: Path,
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cli), *args], input=stdin, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _app_proxy(
    cli: Path, session: str, port: int, env: dict[str, str], cwd: Path
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [str(cli), "app", session, "sshd", "-b", f"127.0.0.1:{port}"],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if f"127.0.0.1:{port}" in line:
                break
        else:
            pytest.fail("the app proxy never announced its port")
        assert any(f"127.0.0.1:{port}" in s for s in seen), "".join(seen)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _ssh(key: Path, port: int, user: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *HERMETIC_SSH, "-i", str(key), "-p", str(port), f"{user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_official_cli_session_mode(
    bai_cli: Path, emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu: Emulator = emulator_factory(server_version="23.09")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)  # the autouse hermetic_home fixture made it
    work.mkdir()
    env = _env(home, BACKEND_ENDPOINT=emu.webserver_url, BACKEND_ENDPOINT_TYPE="session")

    bad = _run(bai_cli, ["login"], env, work, stdin=f"{emu.username}\nwrong\n")
    assert bad.returncode == 1
    assert "Login failed." in bad.stdout + bad.stderr
    assert "User credential mismatch." in bad.stdout + bad.stderr

    login = _run(bai_cli, ["login"], env, work, stdin=f"{emu.username}\n{emu.password}\n")
    assert login.returncode == 0, login.stdout + login.stderr
    assert "Login succeeded." in login.stdout + login.stderr
    assert (home / ".local" / "state" / "backend.ai" / "cookie.dat").is_file()

    dl = _run(bai_cli, ["session", "download", emu.session, "id_container"], env, work)
    assert dl.returncode == 0, dl.stdout + dl.stderr
    key = work / "id_container"
    assert key.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600

    port = _free_port()
    with _app_proxy(bai_cli, emu.session, port, env, work):
        out = _ssh(key, port, emu.ssh_user, "echo via-official-app; test -f ~/id_container && pwd")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("via-official-app\n")

    (work / "up.txt").write_bytes(b"hello from the official client\n")
    created = _run(bai_cli, ["vfolder", "create", "offi", "local:volume1"], env, work)
    assert created.returncode == 0, created.stdout + created.stderr
    assert 'Virtual folder "offi" is created.' in created.stdout
    reserved = _run(bai_cli, ["vfolder", "create", ".ssh", "local:volume1"], env, work)
    assert "reserved for internal operations" in reserved.stdout + reserved.stderr
    up = _run(bai_cli, ["vfolder", "upload", "offi", "up.txt"], env, work, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    ls = _run(bai_cli, ["vfolder", "ls", "offi"], env, work)
    assert ls.returncode == 0, ls.stdout + ls.stderr
    row = next(line for line in ls.stdout.splitlines() if line.startswith("up.txt"))
    assert row.split()[1] == "31"
    (work / "back").mkdir()
    down = _run(bai_cli, ["vfolder", "download", "offi", "up.txt"], env, work / "back", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert (work / "back" / "up.txt").read_bytes() == b"hello from the official client\n"

    logout = _run(bai_cli, ["logout"], env, work)
    assert logout.returncode == 0, logout.stdout + logout.stderr
    after = _run(bai_cli, ["session", "download", emu.session, "id_container"], env, work)
    assert "401" in after.stdout + after.stderr


def test_official_cli_api_mode(
    bai_cli: Path, emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """API mode checks the emulator's signature verification against the real signer."""
    emu = emulator_factory(server_version="23.09")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)  # the autouse hermetic_home fixture made it
    work.mkdir()
    env = _env(
        home,
        BACKEND_ENDPOINT=emu.manager_url,
        BACKEND_ENDPOINT_TYPE="api",
        BACKEND_ACCESS_KEY=emu.access_key,
        BACKEND_SECRET_KEY=emu.secret_key,
    )
    dl = _run(bai_cli, ["session", "download", emu.session, "id_container"], env, work)
    assert dl.returncode == 0, dl.stdout + dl.stderr
    key = work / "id_container"
    port = _free_port()
    with _app_proxy(bai_cli, emu.session, port, env, work):
        out = _ssh(key, port, emu.ssh_user, "echo api-mode")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "api-mode\n"
    wrong = _run(
        bai_cli,
        ["session", "download", emu.session, "id_container"],
        dict(env, BACKEND_SECRET_KEY="not-the-secret"),
        work / "..",
    )
    assert "401" in wrong.stdout + wrong.stderr
    assert "Signature mismatch" in wrong.stdout + wrong.stderr


@pytest.mark.parametrize("version", ["26.3", "26.8"])
def test_official_cli_download_fails_on_newer_servers(
    bai_cli: Path, emulator_factory: EmulatorFactory, tmp_path: Path, version: str
) -> None:
    """The 23.09 client asks GET + JSON body; 26.3 takes POST + body, 26.8 POST + query.

    Both answer its GET with 405, as the real servers do (spec §14): the 23.09 client's
    `session download` fails there, which is why sshkit picks the verb per version.
    """
    emu = emulator_factory(server_version=version)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir()
    env = _env(
        home,
        BACKEND_ENDPOINT=emu.manager_url,
        BACKEND_ENDPOINT_TYPE="api",
        BACKEND_ACCESS_KEY=emu.access_key,
        BACKEND_SECRET_KEY=emu.secret_key,
    )
    emu.hook("DELETE", "requests")  # the emulator is shared: look at this client's only
    dl = _run(bai_cli, ["session", "download", emu.session, "id_container"], env, work)
    assert "405" in dl.stdout + dl.stderr, dl.stdout + dl.stderr
    assert not (work / "id_container").exists()
    requests_seen = [r for r in emu.hook("GET", "requests") if r["path"].endswith("/download")]
    assert requests_seen and all(r["method"] == "GET" for r in requests_seen)
