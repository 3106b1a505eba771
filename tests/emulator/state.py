"""The emulator's shared state: credentials, the keypair's SSH key, sessions, folders, faults."""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.emulator.keys import SshKeypair
from tests.emulator.versions import VersionProfile

if TYPE_CHECKING:
    from tests.emulator.faults import FaultTable
    from tests.emulator.sessions import SessionManager
    from tests.emulator.vfolders import FolderStore

REQUEST_LOG_LIMIT = 10000


@dataclass
class Credentials:
    """The one user and keypair the emulated cluster knows."""

    access_key: str
    secret_key: str
    username: str
    password: str
    user_id: str
    role: str = "user"

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """Credentials are cached in the state dir so a reused state dir keeps its login."""
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        creds = cls(
            access_key="AKIA" + secrets.token_hex(8).upper(),
            secret_key=secrets.token_urlsafe(30)[:40],
            username="user@example.com",
            password=secrets.token_urlsafe(12),
            user_id=str(uuid.uuid4()),
        )
        path.write_text(json.dumps(creds.__dict__))
        path.chmod(0o600)
        return creds


@dataclass
class WebSession:
    """A webserver login session (the value behind AIOHTTP_SESSION)."""

    key: str
    access_key: str
    created: float


@dataclass
class Options:
    """Command-line options that change behaviour."""

    host: str
    server_version: str
    sshd: str
    allow_dot_ssh_folder: bool
    state_dir: Path
    # The webserver blocks logins after this many failures in 20 min (real default 10);
    # 0 (the emulator's default) keeps shared test emulators from locking each other out.
    login_block_after: int = 0
    # Kubernetes agents: ~/.ssh is a ConfigMap mount holding id_container (spec §14).
    kubernetes: bool = False
    # max_concurrent_logins of the user (26.8 only); 0 = no cap.
    max_concurrent_logins: int = 0


@dataclass
class EmulatorState:
    """Everything the listeners share. One instance per emulator process."""

    options: Options
    profile: VersionProfile
    creds: Credentials
    ssh_keypair: SshKeypair
    ssh_user: str = field(default_factory=getpass.getuser)
    # Base32 TOTP secret when every login needs a one-time code (--totp).
    totp_secret: str | None = None
    web_sessions: dict[str, WebSession] = field(default_factory=dict)
    failed_logins: dict[str, list[float]] = field(default_factory=dict)
    request_log: list[dict[str, Any]] = field(default_factory=list)
    manager_url: str = ""
    webserver_url: str = ""
    storage_url: str = ""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Filled in by app.build_state (kept here so every module reaches them the same way).
    sessions: SessionManager = field(init=False)
    folders: FolderStore = field(init=False)
    faults: FaultTable = field(init=False)

    def log_request(self, listener: str, request: web.BaseRequest) -> None:
        headers: dict[str, str] = {}
        for k, v in request.headers.items():
            headers[k] = headers[k] + ", " + v if k in headers else v
        self.request_log.append(
            {
                "time": time.time(),
                "listener": listener,
                "method": request.method,
                "path": request.raw_path,
                "headers": headers,
                "cookies": dict(request.cookies),
            }
        )
        if len(self.request_log) > REQUEST_LOG_LIMIT:
            del self.request_log[: len(self.request_log) - REQUEST_LOG_LIMIT]


# Set on requests that came through the webserver listener (session mode).
VIA_WEBSERVER = "emulator_via_webserver"
# Set when the webserver itself answers an error (not logged in, failed websocket
# upstream): its own bodies never carry `error_code`.
WEBSERVER_OWN_ERROR = "emulator_webserver_own_error"

STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)


def get_state(request: web.Request) -> EmulatorState:
    return request.config_dict[STATE]
