"""`sshkit config show`: values with their source, secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sshkit.credentials import StoredLogin, write_login
from sshkit.errors import ExitCode


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def rows(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        key, _, rest = line.partition(" ")
        out[key] = rest.strip()
    return out


def test_config_show_sources_and_masking(hermetic_home: Path) -> None:
    config = hermetic_home / ".config" / "sshkit" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.lab]\nendpoint = "https://lab.example.com:443/"\ndomain = "lab"\n')
    proc = run(
        "config",
        "show",
        "--profile",
        "lab",
        BACKEND_SECRET_KEY="top-secret-value",
        SSHKIT_ACCESS_KEY="AKVISIBLE",
        BACKEND_ACCESS_KEY="AKHIDDEN",
    )
    assert proc.returncode == 0, proc.stderr
    assert "top-secret-value" not in proc.stdout
    table = rows(proc.stdout)
    assert table["profile"].split() == ["lab", "(flag", "--profile)"]
    assert table["endpoint"].startswith("https://lab.example.com ")
    assert table["endpoint"].endswith("(config file [profiles.lab])")
    assert (
        table["access_key"].startswith("AKVISIBLE")
        and "(env SSHKIT_ACCESS_KEY)" in table["access_key"]
    )
    assert (
        table["secret_key"].startswith("********")
        and "(env BACKEND_SECRET_KEY)" in table["secret_key"]
    )
    assert table["domain"].startswith("lab ")
    assert table["endpoint_type"].endswith("(default)")


def test_config_show_masks_the_stored_session_id(hermetic_home: Path) -> None:
    login = StoredLogin(
        endpoint="http://127.0.0.1:1", endpoint_type="session", session_id="sid-do-not-show"
    )
    write_login("default", login)
    proc = run("config", "show")
    assert proc.returncode == 0
    assert "sid-do-not-show" not in proc.stdout
    assert rows(proc.stdout)["session_id"].endswith("(stored login)")


def test_malformed_config_is_one_error_line(hermetic_home: Path) -> None:
    config = hermetic_home / ".config" / "sshkit" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("endpoint = \n")
    proc = run("config", "show")
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stderr.startswith("sshkit: error: config file ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_not_logged_in_commands_say_so(hermetic_home: Path) -> None:
    for args in (["whoami"], ["fetch-key", "s"]):
        proc = run(*args)
        assert proc.returncode == ExitCode.CONFIG
        assert proc.stderr.startswith("sshkit: error: not logged in")
        assert "sshkit login" in proc.stderr
    assert not (hermetic_home / ".ssh").exists()


def test_login_without_endpoint_is_a_usage_error(hermetic_home: Path) -> None:
    proc = run("login", "--username", "u", "--password-stdin")
    assert proc.returncode == ExitCode.USAGE
    assert "--endpoint" in proc.stderr
