"""Shared set-up for the end-to-end relay and forward tests: real ssh through the emulator."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.emulator_fixture import HERMETIC_SSH, Emulator

VENV_SSHKIT = Path(sys.executable).with_name("sshkit")


def sshkit_argv() -> list[str]:
    """The installed console script when there is one (what users run), else `-m sshkit`."""
    if VENV_SSHKIT.exists():
        return [str(VENV_SSHKIT)]
    return [sys.executable, "-m", "sshkit"]


def session_home(emu: Emulator, session: str) -> Path:
    for item in emu.hook("GET", "sessions"):
        if item["name"] == session:
            return Path(item["home"])
    raise LookupError(session)


@dataclass
class Client:
    """A logged-in sshkit (API or session mode) plus the key the session's sshd accepts."""

    emu: Emulator
    mode: str
    env: dict[str, str]
    key: Path

    def ssh_options(self) -> list[str]:
        return [*HERMETIC_SSH, "-i", str(self.key)]

    def proxy_option(self, extra: str = "") -> list[str]:
        words = [*sshkit_argv(), "relay", *shlex.split(extra)]
        return ["-o", "ProxyCommand=" + " ".join(shlex.quote(w) for w in words) + " %h"]

    def ssh(self, session: str, *command: str, extra: str = "") -> list[str]:
        return [
            "ssh",
            *self.ssh_options(),
            *self.proxy_option(extra),
            f"{self.emu.ssh_user}@{session}",
            *command,
        ]

    def run(
        self, argv: list[str], *, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=timeout, input=input)


def make_client(emu: Emulator, mode: str, workdir: Path, session: str | None = None) -> Client:
    """Log in (env keys in API mode, `sshkit login` in session mode) and copy the container key."""
    env = dict(os.environ)
    if mode == "api":
        env.update(
            SSHKIT_ENDPOINT=emu.manager_url,
            SSHKIT_ENDPOINT_TYPE="api",
            SSHKIT_ACCESS_KEY=emu.access_key,
            SSHKIT_SECRET_KEY=emu.secret_key,
        )
    else:
        proc = subprocess.run(
            [
                *sshkit_argv(),
                "login",
                "--endpoint",
                emu.webserver_url,
                "--endpoint-type",
                "session",
                "--username",
                emu.username,
                "--password-stdin",
            ],
            input=emu.password.encode(),
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / f"id_container_{mode}"
    shutil.copyfile(session_home(emu, session or emu.session) / "id_container", key)
    key.chmod(0o600)
    return Client(emu=emu, mode=mode, env=env, key=key)
