"""Shell completion through typer's entry point (`_SSHKIT_COMPLETE=complete_SHELL sshkit`),
as bash, zsh and fish call it: host aliases from the ssh config, session names from the server.

The session names come from `GET /session/_/match?id=PREFIX` (spec §8.1), which the emulator
does not model; a small local server answers it here, so that its requests can be counted
(the cache) and it can be made to hang (the deadline).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sshkit.formats.ssh_config import SshConfig
from sshkit.services import completion
from sshkit.settings import Connection
from tests.test_ssh_config_unit import BLOCK, WILD

SSHKIT = Path(sys.executable).parent / "sshkit"

SESSIONS = [
    {"id": "0d7a2a8e-0000-4000-8000-000000000001", "name": "train-gpu", "status": "RUNNING"},
    {"id": "0d7a2a8e-0000-4000-8000-000000000002", "name": "train-cpu", "status": "PENDING"},
    {"id": "0d7a2a8e-0000-4000-8000-000000000003", "name": "train-old", "status": "TERMINATED"},
    {"id": "0d7a2a8e-0000-4000-8000-000000000004", "name": "eval", "status": "RUNNING"},
]


def complete(
    shell: str, line: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """What `shell` gets from sshkit for the command line `line` (cursor at its end)."""
    extra = {"_SSHKIT_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        words = line.split()
        extra |= {
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - (0 if line.endswith(" ") else 1)),
        }
    else:
        extra["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            extra["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    env = {**(env or os.environ), **extra}
    return subprocess.run([str(SSHKIT)], capture_output=True, text=True, timeout=60, env=env)


def values(shell: str, out: str) -> list[str]:
    """The completion values in `shell`'s format, without descriptions."""
    if shell == "zsh":
        # typer's zsh answer: _arguments '*: :(("value":"help"\n"value"))', or `_files`.
        if out.strip() == "_files":
            return []
        inner = out[out.index("((") + 2 : out.rindex("))")]
        return [m.replace('""', '"') for m in re.findall(r'^"((?:[^"]|"")*)"', inner, re.M)]
    if shell == "fish":
        return [ln.split("\t", 1)[0] for ln in out.splitlines() if ln]
    return [ln for ln in out.splitlines() if ln]


SHELLS = ["bash", "zsh", "fish"]


@pytest.fixture
def ssh_config(hermetic_home: Path) -> Path:
    config = hermetic_home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(SshConfig.parse(b"Host web\n").upsert(BLOCK).upsert(WILD).render())
    return config


@pytest.mark.parametrize("shell", SHELLS)
def test_host_aliases_complete_from_the_config(shell: str, ssh_config: Path) -> None:
    proc = complete(shell, "sshkit hosts remove ")
    assert proc.returncode == 0, proc.stderr
    assert sorted(values(shell, proc.stdout)) == sorted([BLOCK.alias, WILD.alias])
    proc = complete(shell, f"sshkit doctor {BLOCK.alias[:3]}")
    assert values(shell, proc.stdout) == [BLOCK.alias]


def test_aliases_follow_ssh_config_given_on_the_line(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(SshConfig.parse(b"").upsert(BLOCK).render())
    proc = complete("bash", f"sshkit hosts remove --ssh-config {other} ")
    assert values("bash", proc.stdout) == [BLOCK.alias]


def test_a_broken_config_completes_nothing_and_prints_nothing(hermetic_home: Path) -> None:
    config = hermetic_home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(b"# BEGIN SSHKIT bai-vscode\nHost bai-vscode\n")
    proc = complete("bash", "sshkit hosts remove ")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")


class MatchServer:
    """Answers `GET /` (versions) and `GET /session/_/match?id=PREFIX` like the manager."""

    def __init__(self) -> None:
        self.matches: list[str] = []
        self.hang = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/":
                    body = {"version": "v7.20230615", "manager": "23.09.0"}
                elif url.path == "/session/_/match":
                    prefix = parse_qs(url.query).get("id", [""])[0]
                    outer.matches.append(prefix)
                    if outer.hang.is_set():
                        time.sleep(10)
                    found = [s for s in SESSIONS if str(s["name"]).startswith(prefix)][:10]
                    body = {"matches": found}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def match_server() -> Iterator[MatchServer]:
    srv = MatchServer()
    thread = threading.Thread(target=srv.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.server.shutdown()
        srv.server.server_close()


def logged_in_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SSHKIT_ENDPOINT": url,
        "SSHKIT_ENDPOINT_TYPE": "api",
        "SSHKIT_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE",
        "SSHKIT_SECRET_KEY": "x" * 40,
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_session_names_complete_from_the_server(shell: str, match_server: MatchServer) -> None:
    env = logged_in_env(match_server.url)
    proc = complete(shell, "sshkit ssh tra", env)
    assert proc.returncode == 0, proc.stderr
    assert values(shell, proc.stdout) == ["train-cpu", "train-gpu"]  # not the terminated one
    assert match_server.matches == ["tra"]
    # The same Tab again within the cache's lifetime does not ask the server.
    proc = complete(shell, "sshkit setup-vscode tra", env)
    assert values(shell, proc.stdout) == ["train-cpu", "train-gpu"]
    assert match_server.matches == ["tra"]


def test_every_session_argument_completes(match_server: MatchServer) -> None:
    env = logged_in_env(match_server.url)
    for line in (
        "sshkit fetch-key e",
        "sshkit export putty e",
        "sshkit push-authorized-keys --to session --session e",
        "sshkit authorized-keys list --session e",
    ):
        assert values("bash", complete("bash", line, env).stdout) == ["eval"], line


def test_a_hanging_server_completes_nothing_within_the_deadline(
    match_server: MatchServer,
) -> None:
    match_server.hang.set()
    start = time.monotonic()
    proc = complete("bash", "sshkit ssh t", logged_in_env(match_server.url))
    took = time.monotonic() - start
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")
    # The server sleeps 10 s; completion gives up after its 2 s deadline (generous bound).
    assert took < 8, took


def test_not_logged_in_completes_nothing() -> None:
    proc = complete("bash", "sshkit ssh t")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")


def test_the_cache_expires_and_stays_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSHKIT_ENDPOINT", "https://bai.example")
    monkeypatch.setenv("SSHKIT_ACCESS_KEY", "AK")
    monkeypatch.setenv("SSHKIT_SECRET_KEY", "SK")
    asked: list[str] = []
    clock = [1000.0]

    def fetch(prefix: str, conn: Connection) -> list[str]:
        asked.append(prefix)
        return [f"{prefix}-{len(asked)}"]

    cache = tmp_path / "c.json"
    first = completion.session_names("a", fetch=fetch, now=lambda: clock[0], cache=cache)
    assert completion.session_names("a", fetch=fetch, now=lambda: clock[0], cache=cache) == first
    clock[0] += completion.CACHE_SECONDS + 1
    assert completion.session_names("a", fetch=fetch, now=lambda: clock[0], cache=cache) != first
    assert asked == ["a", "a"]
    for i in range(completion.CACHE_ENTRIES * 2):
        clock[0] += 1
        completion.session_names(f"p{i}", fetch=fetch, now=lambda: clock[0], cache=cache)
    assert len(json.loads(cache.read_bytes())) == completion.CACHE_ENTRIES
    assert cache.stat().st_mode & 0o777 == 0o600
