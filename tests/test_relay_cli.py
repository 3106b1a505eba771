"""The `sshkit relay` command line: fast path, light imports, errors on stderr only, the log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.credentials import read_login
from sshkit.errors import ExitCode
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import make_client

HEAVY = ("typer", "click", "requests", "cryptography", "paramiko", "aiohttp", "rich")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, timeout=60, env=env or dict(os.environ)
    )


def refused_env() -> dict[str, str]:
    """An API-mode login whose endpoint refuses connections at once."""
    return dict(
        os.environ,
        SSHKIT_ENDPOINT="http://127.0.0.1:9",
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY="AKTEST",
        SSHKIT_SECRET_KEY="not-a-real-secret",
    )


def test_relay_imports_only_what_it_needs() -> None:
    proc = run("-X", "importtime", "-m", "sshkit", "relay", "demo", env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    modules = {
        line.split("|")[-1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "websockets.sync.client" in modules
    loaded_heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded_heavy == []


def test_errors_are_one_line_on_stderr_and_stdout_stays_empty() -> None:
    proc = run("-m", "sshkit", "relay", "demo", env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "sshkit: error: cannot reach 127.0.0.1: Connection refused"
    ]
    assert b"not-a-real-secret" not in proc.stderr


def test_not_logged_in() -> None:
    proc = run("-m", "sshkit", "relay", "demo")
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stdout == b""
    assert proc.stderr.decode().startswith("sshkit: error: not logged in")


def test_usage_errors() -> None:
    missing = run("-m", "sshkit", "relay")
    assert missing.returncode == ExitCode.USAGE
    assert missing.stderr.decode().splitlines()[0] == (
        "sshkit: error: the following arguments are required: host"
    )
    bad = run("-m", "sshkit", "relay", "--timeout", "0", "demo", env=refused_env())
    assert bad.returncode == ExitCode.USAGE
    assert bad.stdout == b""


def test_help_goes_through_typer() -> None:
    proc = run("-m", "sshkit", "relay", "--help")
    assert proc.returncode == 0
    assert b"ProxyCommand" in proc.stdout
    assert b"--suffix" in proc.stdout
    listing = run("-m", "sshkit", "--help")
    assert re.search(rb"^\s+relay\s", listing.stdout, re.M)
    assert re.search(rb"^\s+forward\s", listing.stdout, re.M)


def test_typer_path_behaves_the_same() -> None:
    # The typer command (used for `sshkit --debug relay`, and by CliRunner) must
    # behave like the fast path.
    code = (
        "import sys; sys.argv = ['sshkit', 'relay', 'demo'];"
        "from sshkit.cli import _register_commands, app;"
        "from sshkit.cli._errors import run_guarded;"
        "_register_commands(); run_guarded(app)"
    )
    proc = run("-c", code, env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "sshkit: error: cannot reach 127.0.0.1: Connection refused"
    ]


@pytest.mark.parametrize("mode", ["api", "session"])
@pytest.mark.parametrize("how", ["option", "env"])
def test_log_file_records_events_but_no_secrets(
    emulator_factory: EmulatorFactory, tmp_path: Path, mode: str, how: str
) -> None:
    client = make_client(emulator_factory(), mode, tmp_path)
    log = tmp_path / "relay.log"
    extra = ""
    if how == "option":
        extra = f"--log-file {log}"
    else:
        client.env["SSHKIT_LOG"] = str(log)
    proc = client.run(client.ssh(client.emu.session, "echo logged", extra=extra))
    assert proc.returncode == 0, proc.stderr.decode()
    text = log.read_text()
    assert "websocket open" in text
    assert re.search(r"done: up \d+ B", text)
    assert re.search(r"peak rss \d+ B", text)
    assert log.stat().st_mode & 0o777 == 0o600
    secrets = [client.emu.secret_key, client.emu.password, "Authorization", "Cookie"]
    if mode == "session":
        stored = read_login("default", client.env)
        assert stored is not None and stored.session_id
        secrets.append(stored.session_id)
    for secret in secrets:
        assert secret not in text
    assert "app=sshd" not in text  # the query string is not logged
