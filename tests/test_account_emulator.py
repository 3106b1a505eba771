"""login, whoami, fetch-key and a real ssh login, against the emulator at every server version.

The CLI runs as a real subprocess (`python -m sshkit`) with the hermetic HOME.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sshkit.errors import ExitCode
from tests.emulator_fixture import HERMETIC_SSH, Emulator, EmulatorFactory

VERSIONS = ["23.09", "24.09", "26.3"]


def sshkit(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("sshkit: error: ")]
    assert len(errors) == 1, proc.stderr
    other = [ln for ln in proc.stderr.splitlines() if not ln.startswith("sshkit: ")]
    assert other == [], proc.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]


def api_env(emu: Emulator, **overrides: str) -> dict[str, str]:
    return {
        "BACKEND_ENDPOINT": emu.manager_url,
        "BACKEND_ACCESS_KEY": emu.access_key,
        "BACKEND_SECRET_KEY": emu.secret_key,
        **overrides,
    }


def session_login(emu: Emulator, *extra: str, password: str | None = None) -> Any:
    return sshkit(
        "login",
        "--endpoint",
        emu.webserver_url,
        "--endpoint-type",
        "session",
        "--username",
        emu.username,
        "--password-stdin",
        *extra,
        stdin=emu.password if password is None else password,
    )


def session_home(emu: Emulator, name: str) -> Path:
    for sess in emu.hook("GET", "sessions"):
        if sess["name"] == name:
            return Path(sess["home"])
    raise AssertionError(f"no session {name}")


def public_of(key: Path) -> str:
    proc = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    )
    return proc.stdout.split()[1]


def fingerprint_of(path: Path) -> str:
    proc = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.split()[1]


def ssh_login(
    emu: Emulator, key: Path, session: str | None = None
) -> subprocess.CompletedProcess[str]:
    host, port = emu.sshd_addr(session)
    return subprocess.run(
        [
            "ssh",
            *HERMETIC_SSH,
            "-i",
            str(key),
            "-p",
            str(port),
            f"{emu.ssh_user}@{host}",
            "echo sshkit-ok",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def default_key(home: Path, profile: str = "default") -> Path:
    return home / ".ssh" / "sshkit" / profile / "id_container"


@pytest.mark.parametrize("mode", ["session", "api"])
@pytest.mark.parametrize("version", VERSIONS)
def test_login_whoami_fetch_key_and_ssh(
    emulator_factory: EmulatorFactory, hermetic_home: Path, version: str, mode: str
) -> None:
    emu = emulator_factory(server_version=version)
    env: dict[str, str] = {}
    if mode == "session":
        proc = session_login(emu)
        assert proc.returncode == 0, proc.stderr
        assert f"Logged in to {emu.webserver_url}" in proc.stdout
    else:
        # API mode works from the Backend.AI client's variables alone, without login.
        env = api_env(emu)
    stored = hermetic_home / ".local" / "state" / "sshkit" / "logins" / "default.json"
    if mode == "session":
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert emu.password not in stored.read_text()

    who = sshkit("whoami", env=env)
    assert who.returncode == 0, who.stderr
    assert f"({mode} mode)" in who.stdout
    assert emu.info["manager_version"] in who.stdout  # the probed version

    fetched = sshkit("fetch-key", emu.session, env=env)
    assert fetched.returncode == 0, fetched.stderr
    key = default_key(hermetic_home)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((hermetic_home / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    authorized = session_home(emu, emu.session) / ".ssh" / "authorized_keys"
    expected = fingerprint_of(authorized)
    assert expected in fetched.stdout.split()
    assert public_of(key) == authorized.read_text().split()[1]

    result = ssh_login(emu, key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sshkit-ok"


def test_api_login_from_env_is_stored_and_used_later(
    emulator: Emulator, hermetic_home: Path
) -> None:
    proc = sshkit("login", "--profile", "lab", env=api_env(emulator))
    assert proc.returncode == 0, proc.stderr
    stored = hermetic_home / ".local" / "state" / "sshkit" / "logins" / "lab.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # later commands need no environment at all
    who = sshkit("whoami", "--profile", "lab")
    assert who.returncode == 0 and emulator.access_key in who.stdout
    shown = sshkit("config", "show", "--profile", "lab")
    assert shown.returncode == 0
    assert emulator.secret_key not in shown.stdout
    assert "stored login" in shown.stdout
    out = hermetic_home / "keys" / "mine"
    fetched = sshkit("fetch-key", emulator.session, "-o", str(out), "--profile", "lab")
    assert fetched.returncode == 0, fetched.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sshkit("logout", "--profile", "lab").returncode == 0
    assert not stored.exists()
    assert_one_error_line(sshkit("whoami", "--profile", "lab"), ExitCode.CONFIG, "not logged in")


def test_session_logout_ends_the_server_session(emulator: Emulator, hermetic_home: Path) -> None:
    assert session_login(emulator).returncode == 0
    stored = hermetic_home / ".local" / "state" / "sshkit" / "logins" / "default.json"
    import json

    sid = json.loads(stored.read_text())["session_id"]
    out = sshkit("logout")
    assert out.returncode == 0 and "Logged out" in out.stdout
    assert not stored.exists()
    # the old session id is no longer accepted by the webserver
    import requests

    resp = requests.get(
        emulator.webserver_url + "/func/auth/role",
        headers={"X-BackendAI-SessionID": sid},
        timeout=30,
    )
    assert resp.status_code == 401


def test_wrong_password(emulator: Emulator, hermetic_home: Path) -> None:
    proc = session_login(emulator, password="not-the-password")
    assert_one_error_line(proc, ExitCode.AUTH, "login", emulator.username)
    assert "not-the-password" not in proc.stderr
    assert not (hermetic_home / ".local" / "state" / "sshkit" / "logins").exists()


def test_wrong_secret_key(emulator: Emulator, hermetic_home: Path) -> None:
    env = api_env(emulator, BACKEND_SECRET_KEY="wrong-secret-wrong-secret")
    login = sshkit("login", env=env)
    assert_one_error_line(login, ExitCode.AUTH, "signature")
    assert not (hermetic_home / ".local" / "state" / "sshkit" / "logins").exists()
    fetch = sshkit("fetch-key", emulator.session, env=env)
    assert_one_error_line(fetch, ExitCode.AUTH)
    assert "wrong-secret" not in fetch.stderr + fetch.stdout
    assert not (hermetic_home / ".ssh").exists()


def test_unknown_session(emulator: Emulator, hermetic_home: Path) -> None:
    proc = sshkit("fetch-key", "no-such-session", env=api_env(emulator))
    assert_one_error_line(proc, ExitCode.NOT_FOUND, "no-such-session", "No such session")
    assert not (hermetic_home / ".ssh").exists()


@pytest.mark.parametrize("mode", ["session", "api"])
def test_missing_key_file(
    emulator_factory: EmulatorFactory, hermetic_home: Path, mode: str
) -> None:
    emu = emulator_factory(server_version="24.09")
    name = f"nokey-{mode}"
    emu.hook("POST", "sessions", {"name": name})
    try:
        (session_home(emu, name) / "id_container").unlink()
        env = api_env(emu) if mode == "api" else {}
        if mode == "session":
            assert session_login(emu).returncode == 0
        proc = sshkit("fetch-key", name, env=env)
        assert_one_error_line(proc, ExitCode.NOT_FOUND, "id_container", "no such file")
        assert not (hermetic_home / ".ssh").exists()
    finally:
        emu.hook("DELETE", f"sessions/{name}")


def test_http_500(emulator: Emulator, hermetic_home: Path) -> None:
    emulator.hook("POST", "faults", {"kind": "http_500", "path_prefix": "/session/", "count": 1})
    try:
        proc = sshkit("fetch-key", emulator.session, env=api_env(emulator))
    finally:
        emulator.hook("DELETE", "faults")
    assert_one_error_line(proc, ExitCode.SERVER, "HTTP 500")
    assert not (hermetic_home / ".ssh").exists()


def test_unreachable_endpoint(hermetic_home: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"BACKEND_ENDPOINT": f"http://127.0.0.1:{port}", "BACKEND_ACCESS_KEY": "AK",
           "BACKEND_SECRET_KEY": "SK"}  # fmt: skip
    proc = sshkit("fetch-key", "s", env=env)
    assert_one_error_line(proc, ExitCode.NETWORK, f"127.0.0.1:{port}")
    assert not (hermetic_home / ".ssh").exists()


def test_skewed_clock_is_reported_as_such(
    emulator: Emulator,
    hermetic_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real CLI in-process, with the client's clock 20 minutes fast; the emulator's
    date check does the rest."""
    from datetime import UTC, datetime, timedelta

    import sshkit.api.client as client_mod
    from sshkit.cli import main

    monkeypatch.setattr(client_mod, "_utcnow", lambda: datetime.now(UTC) + timedelta(minutes=20))
    for key, value in api_env(emulator).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["sshkit", "fetch-key", emulator.session])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == ExitCode.AUTH
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("sshkit: error: ") and "Date/time sync error" in err[0]
    assert err[1].startswith("sshkit: hint: ") and "clock" in err[1]
    assert not (hermetic_home / ".ssh").exists()


def test_session_id_never_reaches_another_endpoint(
    emulator_factory: EmulatorFactory, hermetic_home: Path
) -> None:
    one = emulator_factory(fresh=True)
    two = emulator_factory(fresh=True)
    assert session_login(one).returncode == 0
    import json

    stored = hermetic_home / ".local" / "state" / "sshkit" / "logins" / "default.json"
    sid = json.loads(stored.read_text())["session_id"]
    two.hook("DELETE", "requests")
    # Point the same profile at the second server, by env and by config file.
    proc = sshkit("fetch-key", two.session, env={"SSHKIT_ENDPOINT": two.webserver_url,
                                                 "SSHKIT_ENDPOINT_TYPE": "session"})  # fmt: skip
    assert_one_error_line(proc, ExitCode.CONFIG, "not logged in", two.webserver_url)
    config = hermetic_home / ".config" / "sshkit" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'endpoint = "{two.webserver_url}"\nendpoint_type = "session"\n')
    assert sshkit("whoami").returncode == ExitCode.CONFIG
    # Logging in to the second server under another profile works and is separate.
    assert session_login(two, "--profile", "two").returncode == 0
    assert sshkit("whoami", "--profile", "two").returncode == 0
    config.unlink()
    assert sshkit("whoami").returncode == 0  # the first login still serves the first server
    log = two.hook("GET", "requests")
    assert log, "the second emulator saw no requests at all"
    for entry in log:
        blob = json.dumps(entry)
        assert sid not in blob, entry


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_unsafe_id_container_in_the_session_is_refused(
    emulator_factory: EmulatorFactory, hermetic_home: Path, kind: str
) -> None:
    """The emulator tars what the session home holds, as Docker would: a symlinked
    or directory `id_container` arrives as a link member or several members."""
    emu = emulator_factory(server_version="26.3")
    name = f"unsafe-{kind}"
    emu.hook("POST", "sessions", {"name": name})
    try:
        key = session_home(emu, name) / "id_container"
        key.unlink()
        if kind == "symlink":
            key.symlink_to("/etc/passwd")
        else:
            key.mkdir()
            (key / "inner").write_text("x")
        proc = sshkit("fetch-key", name, env=api_env(emu))
        assert_one_error_line(proc, ExitCode.UNSAFE_DOWNLOAD, "archive")
        assert not (hermetic_home / ".ssh").exists()
    finally:
        emu.hook("DELETE", f"sessions/{name}")


def test_interactive_password_prompt_does_not_echo(emulator: Emulator, hermetic_home: Path) -> None:
    """In a terminal: the prompt (on stderr) reads the password without echoing it."""
    import select

    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sshkit", "login", "--endpoint", emulator.webserver_url,
         "--username", emulator.username],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: the prompt uses the pty on stdin
    )  # fmt: skip
    os.close(slave)
    assert proc.stderr is not None
    try:
        err = b""
        # click prints "Password:", getpass then flushes typed-ahead input and prints " ":
        # typing must wait for that space.
        while b"Password: " not in err:
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, err
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, err
            err += chunk
        os.write(master, emulator.password.encode() + b"\n")
        out, rest = proc.communicate(timeout=60)
        echoed = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                echoed += os.read(master, 4096)
            except OSError:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (err + rest).decode()
    assert emulator.password.encode() not in out + err + rest + echoed
    assert b"session mode" in out  # --username alone implies session mode


def test_api_login_with_access_key_flag_and_secret_on_stdin(
    emulator: Emulator, hermetic_home: Path
) -> None:
    proc = sshkit(
        "login",
        "--endpoint",
        emulator.manager_url,
        "--endpoint-type",
        "api",
        "--access-key",
        emulator.access_key,
        "--password-stdin",
        stdin=emulator.secret_key + "\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert emulator.secret_key not in proc.stdout + proc.stderr
    who = sshkit("whoami")
    assert who.returncode == 0 and "(api mode)" in who.stdout


def test_logout_forgets_the_login_even_if_the_server_is_gone(
    emulator_factory: EmulatorFactory, hermetic_home: Path
) -> None:
    emu = emulator_factory(fresh=True)
    assert session_login(emu).returncode == 0
    emu.stop()
    proc = sshkit("logout")
    assert proc.returncode == 0
    assert "sshkit: warning: the server session was not ended" in proc.stderr
    assert not (hermetic_home / ".local" / "state" / "sshkit" / "logins" / "default.json").exists()
