"""`sshkit ssh` / `sshkit scp`: one connection through the relay, nothing written to ~/.ssh/config.

A private temporary directory holds a config with one Host block per session named on the
command line (the same block setup-vscode writes); ssh/scp run with ``-F`` that file, so the
user's config is neither read nor changed. The key is downloaded when it is not there yet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sshkit import localfs
from sshkit.errors import LocalFileError, UsageError
from sshkit.formats.names import check_session_name
from sshkit.formats.proxycommand import proxycommand_line
from sshkit.formats.ssh_config import SshConfig, sshkit_host_block
from sshkit.services.vscode import (
    current_platform,
    managed_known_hosts,
    relay_argv,
    session_pin,
    sshkit_launcher,
)

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient

_REMOTE_RE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[A-Za-z0-9_.+-]+):")


@dataclass(frozen=True)
class OneShotOptions:
    user: str = "work"
    identity: Path | None = None
    host_key: str = "pin"
    profile: str | None = None
    # Seconds to wait for a session that is still starting; `notify` hears it once.
    wait: float = 120.0
    notify: Callable[[str], None] | None = None


def scp_sessions(args: Sequence[str]) -> list[str]:
    """Session names used as ``[user@]SESSION:path`` in scp arguments (in order, unique)."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("-") or arg.startswith("/") or arg.startswith("./"):
            continue
        m = _REMOTE_RE.match(arg)
        if m and m.group("host") not in out:
            out.append(check_session_name(m.group("host")))
    return out


def _identity(client: BackendClient, session: str, opts: OneShotOptions) -> Path:
    if opts.identity is not None:
        path = Path(os.path.abspath(localfs.expand_user(opts.identity)))
        if not path.is_file():
            raise LocalFileError(f"the identity file {path} does not exist")
        return path
    from sshkit.services.account import default_key_path, fetch_container_key

    path = Path(os.path.abspath(default_key_path(client.conn.profile)))
    if not path.is_file():
        fetch_container_key(client, session, out=path)
    return path


def render_config(
    sessions: Sequence[str],
    opts: OneShotOptions,
    identity: Path,
    ids: Mapping[str, str | None],
) -> bytes:
    """The temporary config: one block per session, its host key pinned by `ids[session]`."""
    launcher = sshkit_launcher()
    profile = opts.profile
    cfg = SshConfig([])
    for session in sessions:
        sid = ids.get(session)
        hka = f"{session}.{sid[:8]}.sshkit" if sid else f"{session}.sshkit"
        cfg = cfg.upsert(
            sshkit_host_block(
                alias=session,
                hostname=session,
                user=opts.user,
                identity_file=str(identity),
                proxy_command=proxycommand_line(
                    relay_argv(launcher, profile=profile), current_platform()
                ),
                host_key=opts.host_key,
                known_hosts_file=str(managed_known_hosts()),
                host_key_alias=hka if opts.host_key == "pin" else None,
                meta={"kind": "one-shot"},
            )
        )
    return cfg.render()


def prepare_config(client: BackendClient, sessions: Sequence[str], opts: OneShotOptions) -> bytes:
    """The temporary config for ``sessions``: each checked (waited for while it starts),
    the key downloaded when it is not there yet.

    Raises UsageError (no session named), NotFoundError/NotRunningError, LocalFileError
    and the errors of the key download.
    """
    if not sessions:
        raise UsageError("no session named", hint="use SESSION:path in scp arguments")
    ids = {
        session: session_pin(client, session, wait=opts.wait, notify=opts.notify)[0]
        for session in sessions
    }
    identity = _identity(client, sessions[0], opts)
    return render_config(sessions, opts, identity, ids)


@contextmanager
def temporary_config(data: bytes) -> Iterator[Path]:
    """Yield the path of a private temporary ssh config holding ``data``; delete it after."""
    localfs.ensure_private_dir(managed_known_hosts().parent)
    tmp = Path(tempfile.mkdtemp(prefix="sshkit-"))
    try:
        path = tmp / "ssh_config"
        localfs.atomic_write(path, data, mode=0o600)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def require_tool(name: str) -> str:
    """The path of the program `name` on PATH. Raises LocalFileError when it is missing."""
    exe = shutil.which(name)
    if exe is None:
        raise LocalFileError(f"{name} is not installed (or not on PATH)")
    return exe


def run_ssh(ssh: str, config: bytes, session: str, args: Sequence[str]) -> int:
    """Run ``ssh -F TMP SESSION ARGS...`` with ``config`` (from `prepare_config`) in TMP;
    return ssh's exit status. ``ssh`` is the program (`require_tool("ssh")`)."""
    check_session_name(session)
    with temporary_config(config) as path:
        return subprocess.run([ssh, "-F", str(path), session, *args], check=False).returncode


def run_scp(scp: str, config: bytes, args: Sequence[str]) -> int:
    """Run ``scp -F TMP ARGS...`` (remote paths are SESSION:path) with ``config`` in TMP;
    return scp's exit status. ``scp`` is the program (`require_tool("scp")`)."""
    with temporary_config(config) as path:
        return subprocess.run([scp, "-F", str(path), *args], check=False).returncode
