"""Find the processes a test left running (relays, backgrounded ssh) through /proc.

A test's processes are recognised by their HOME: every test gets its own
(`hermetic_home`), and every process it starts inherits it. Tests of other
worktrees running on the same machine have other HOMEs.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _argv(pid: str) -> list[str]:
    try:
        raw = (PROC / pid / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _has_home(pid: str, home: Path) -> bool:
    try:
        environ = (PROC / pid / "environ").read_bytes()
    except OSError:
        return False
    return f"HOME={home}".encode() in environ.split(b"\0")


def is_relay(argv: list[str]) -> bool:
    """`sshkit relay ...` or `python -m sshkit relay ...`."""
    for i, word in enumerate(argv[:-1]):
        if argv[i + 1] == "relay" and (word.endswith("/sshkit") or word == "sshkit"):
            return True
    return False


def is_ssh(argv: list[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "ssh"


def processes(home: Path, kind: str = "relay") -> list[int]:
    """Pids of the running `kind` ("relay" or "ssh") processes that have `home` as HOME."""
    if not PROC.is_dir():
        return []
    match = is_relay if kind == "relay" else is_ssh
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _argv(entry.name)
        if argv and match(argv) and _has_home(entry.name, home):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(int(entry.name))
    return found


def wait_none(home: Path, kind: str = "relay", timeout: float = 5.0) -> list[int]:
    """Wait up to `timeout` s for the `kind` processes of `home` to end; return those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes(home, kind)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
