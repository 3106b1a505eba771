"""Start `python -m tests.emulator` as a subprocess and hand tests its ready file.

The emulator is an independent model of the Backend.AI server: this module
never imports sshkit either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import requests

    from tests.emulator.testclient import BaiClient

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0 * float(os.environ.get("SSHKIT_TEST_TIMEOUT_FACTOR", "1"))

# Options for a real `ssh`/`scp`/`sftp` that read nothing of the user's (no config,
# no known_hosts, no agent keys) and never prompt.
HERMETIC_SSH = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "ConnectTimeout=20",
    "-o", "LogLevel=ERROR",
]  # fmt: skip


@dataclass
class Emulator:
    """A running emulator: its ready-file fields plus helpers for the test hooks."""

    info: dict[str, Any]
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    args: tuple[str, ...] = field(default=())

    @property
    def manager_url(self) -> str:
        return str(self.info["manager_url"])

    @property
    def webserver_url(self) -> str:
        return str(self.info["webserver_url"])

    @property
    def storage_url(self) -> str:
        return str(self.info["storage_url"])

    @property
    def access_key(self) -> str:
        return str(self.info["access_key"])

    @property
    def secret_key(self) -> str:
        return str(self.info["secret_key"])

    @property
    def username(self) -> str:
        return str(self.info["username"])

    @property
    def password(self) -> str:
        return str(self.info["password"])

    @property
    def ssh_user(self) -> str:
        return str(self.info["ssh_user"])

    @property
    def session(self) -> str:
        """The first session the emulator started with."""
        return str(self.info["sessions"][0])

    def sshd_addr(self, session: str | None = None) -> tuple[str, int]:
        host, port = str(self.info["sshd"][session or self.session]).rsplit(":", 1)
        return host, int(port)

    def hook(self, method: str, path: str, json_body: Any = None) -> Any:
        """Call a test hook under /_emulator/ and return its decoded JSON (or None)."""
        import requests

        url = self.manager_url.rstrip("/") + "/_emulator/" + path.lstrip("/")
        resp = requests.request(method, url, json=json_body, timeout=30)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def api_client(self) -> BaiClient:
        """A signing API-mode client of this emulator (the tests' own, not sshkit's)."""
        from tests.emulator.testclient import BaiClient

        return BaiClient(
            self.manager_url, mode="api", access_key=self.access_key, secret_key=self.secret_key
        )

    def download_key(
        self, session: str, dest: Path, file: str = "id_container"
    ) -> requests.Response:
        """Ask for `session`'s `file`; on 200 write it to `dest` with mode 0600."""
        # 23.09 takes GET for this call; later versions POST (spec §5.4); 26.3 reads the
        # parameters from a JSON body only, 26.8 from the query only (spec §14).
        version = self.info["server_version"]
        method = "GET" if version == "23.09" else "POST"
        path = f"/session/{session}/download_single"
        if version == "26.3":
            resp = self.api_client().request(method, path, json_body={"file": file})
        else:
            resp = self.api_client().request(method, path, params={"file": file})
        if resp.status_code == 200:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(resp.content)
        return resp

    def sshkit_api_env(self, **extra: str) -> dict[str, str]:
        """The current environment plus this emulator's API-mode credentials for sshkit."""
        env = dict(os.environ)
        env.update(
            SSHKIT_ENDPOINT=self.manager_url,
            SSHKIT_ENDPOINT_TYPE="api",
            SSHKIT_ACCESS_KEY=self.access_key,
            SSHKIT_SECRET_KEY=self.secret_key,
            **extra,
        )
        return env

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


def start_emulator(
    workdir: Path,
    *,
    server_version: str = "26.8",
    sshd: str = "openssh",
    allow_dot_ssh_folder: bool = False,
    extra_args: tuple[str, ...] = (),
) -> Emulator:
    """Start an emulator in `workdir` and wait for its ready file."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    state = workdir / "state"
    log_path = workdir / "emulator.log"
    args = [
        sys.executable,
        "-m",
        "tests.emulator",
        "--port",
        "0",
        "--server-version",
        server_version,
        "--sshd",
        sshd,
        "--state-dir",
        str(state),
        "--ready-file",
        str(ready),
        *(["--allow-dot-ssh-folder"] if allow_dot_ssh_folder else []),
        *extra_args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSHKIT_", "BACKEND_"))}
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(
                f"emulator exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"emulator not ready:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return Emulator(info=info, process=proc, state_dir=state, log_path=log_path, args=tuple(args))


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(scope="session")
def emulator_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorFactory]:
    """Start emulators on demand; ones with the same options are shared for the session.

    Tests that change server state in ways others would notice should pass
    `fresh=True` to get their own instance.
    """
    cache: dict[tuple[Any, ...], Emulator] = {}
    started: list[Emulator] = []

    def factory(
        *,
        server_version: str = "26.8",
        sshd: str = "openssh",
        allow_dot_ssh_folder: bool = False,
        fresh: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> Emulator:
        key = (server_version, sshd, allow_dot_ssh_folder, extra_args)
        if not fresh and key in cache and cache[key].process.poll() is None:
            return cache[key]
        emu = start_emulator(
            tmp_path_factory.mktemp("emulator"),
            server_version=server_version,
            sshd=sshd,
            allow_dot_ssh_folder=allow_dot_ssh_folder,
            extra_args=extra_args,
        )
        started.append(emu)
        if not fresh:
            cache[key] = emu
        return emu

    yield factory
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    """A shared emulator at the newest server version (26.8) with OpenSSH sessions."""
    return emulator_factory()


@pytest.fixture
def api_env(emulator: Emulator) -> dict[str, str]:
    """Environment for running sshkit against `emulator` in API mode (SSHKIT_* keys)."""
    return emulator.sshkit_api_env()
