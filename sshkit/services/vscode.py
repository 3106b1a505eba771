"""`sshkit setup-vscode`: write the Host blocks VS Code Remote-SSH (and plain ssh) use.

The flow is split in two so that the CLI can show a diff and ask before anything is written:

* ``plan_setup`` checks the login and the session, decides the key path and builds the new
  config text (nothing is written);
* ``apply_setup`` fetches the key, fixes permissions, writes the config atomically (after
  ``ssh -G`` accepted the candidate), then checks the effective values with ``ssh -G`` and
  updates VS Code's settings.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sshkit import localfs
from sshkit.errors import LocalFileError, UsageError
from sshkit.formats import vscode_settings
from sshkit.formats.names import check_session_name
from sshkit.formats.proxycommand import Platform, proxycommand_line
from sshkit.formats.ssh_config import HostBlock, multiplex_options, sshkit_host_block
from sshkit.services import sshcheck
from sshkit.services.sshconfig_edit import (
    ConfigPlan,
    default_ssh_dir,
    plan_upsert,
    refuse_rejected_config,
    verify_candidate,
    write_plan,
)

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient

DEFAULT_ALIAS = "bai-vscode"
DEFAULT_USER = "work"
DEFAULT_SUFFIX = ".bai"
DEFAULT_MULTIPLEX_PERSIST = "10m"
REMOTE_FOLDER = "/home/work"


def current_platform() -> Platform:
    return "windows" if os.name == "nt" else "posix"


def sshkit_launcher() -> list[str]:
    """The absolute command that runs sshkit (for the ProxyCommand).

    The console script next to the running interpreter is preferred (it is what `pip`/`pipx`
    installed with this very sshkit); then `sshkit` on PATH; then ``python -m sshkit``.
    """
    override = os.environ.get("SSHKIT_EXECUTABLE")
    if override:
        return [os.path.abspath(override)]
    bindir = Path(sys.executable).parent
    for name in ("sshkit.exe", "sshkit") if os.name == "nt" else ("sshkit",):
        candidate = bindir / name
        if candidate.is_file():
            return [os.path.abspath(candidate)]
    found = shutil.which("sshkit")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "sshkit"]


def relay_argv(
    launcher: list[str], *, suffix: str | None = None, profile: str | None = None
) -> list[str]:
    argv = [*launcher, "relay"]
    if profile:
        argv += ["--profile", profile]
    if suffix:
        argv += ["--suffix", suffix]
    # "--": whatever ssh substitutes for %h is the session, never an option of the relay.
    return [*argv, "--", "%h"]


def managed_known_hosts() -> Path:
    """The known_hosts file sshkit manages for pinned container host keys."""
    return default_ssh_dir() / "sshkit" / "known_hosts"


def control_dir() -> Path:
    """The private directory of the control sockets of multiplexed blocks (--multiplex)."""
    return default_ssh_dir() / "sshkit" / "mux"


def refuse_multiplex_on(platform: Platform) -> None:
    """Raise UsageError on Windows, whose OpenSSH has no ControlMaster."""
    if platform == "windows":
        raise UsageError(
            "--multiplex is for macOS and Linux: the OpenSSH of Windows has no ControlMaster"
        )


def _with_multiplex(
    blocks: list[HostBlock], persist: str, platform: Platform, directory: Path
) -> list[HostBlock]:
    """`blocks` sharing one connection per host through a ControlMaster.

    Raises UsageError on Windows (its OpenSSH has no ControlMaster) or for a bad
    persist time or a directory too long for a socket.
    """
    refuse_multiplex_on(platform)
    from sshkit.errors import SshConfigError

    try:
        extra = multiplex_options(
            str(directory), persist, sun_path=108 if sys.platform == "linux" else 104
        )
    except SshConfigError as exc:
        raise UsageError(exc.message) from None
    return [
        dataclasses.replace(b, options=[*b.options, *extra], meta={**b.meta, "multiplex": persist})
        for b in blocks
    ]


@dataclass(frozen=True)
class SetupOptions:
    session: str
    alias: str = DEFAULT_ALIAS
    user: str = DEFAULT_USER
    identity: Path | None = None
    ssh_config: Path | None = None
    suffix: str = DEFAULT_SUFFIX
    host_key: str | None = None  # None: pin for the alias, off for the wildcard
    ppk: bool = False
    profile: str | None = None
    wildcard: bool = True
    # ControlPersist time when the blocks share connections (--multiplex), else None.
    multiplex: str | None = None
    # Seconds to wait for a session that is still starting (0: do not wait).
    wait: float = 0.0


@dataclass
class SetupPlan:
    options: SetupOptions
    config: ConfigPlan
    identity: Path
    fetch_key: bool
    session_id: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SetupResult:
    plan: SetupPlan
    backup: Path | None = None
    key_fingerprint: str | None = None
    ppk_path: Path | None = None
    vscode_settings: Path | None = None
    mismatches: list[tuple[str, sshcheck.Mismatch]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_blocks(
    opts: SetupOptions,
    identity: Path,
    *,
    launcher: list[str] | None = None,
    platform: Platform | None = None,
    session_id: str | None = None,
    known_hosts: Path | None = None,
) -> list[HostBlock]:
    """The concrete alias block and (unless disabled) the ``Host *SUFFIX`` wildcard block."""
    launcher = launcher or sshkit_launcher()
    platform = platform or current_platform()
    kh = str(known_hosts or managed_known_hosts())
    check_session_name(opts.session)
    for what, path in (("identity file", str(identity)), ("known_hosts file", kh)):
        if "${" in path:
            raise UsageError(
                f"the {what} path {path} contains '${{', which ssh expands as an"
                " environment variable (OpenSSH has no way to escape it)",
                hint="use a path without '${'",
            )
    if opts.alias.startswith("-") or "*" in opts.alias or "?" in opts.alias:
        raise UsageError(f"--alias must be a plain name, not {opts.alias!r}")
    if opts.suffix and (not opts.suffix.startswith(".") or len(opts.suffix) < 2):
        raise UsageError("--suffix must start with '.', e.g. .bai")
    policy = opts.host_key or "pin"
    meta = {
        "kind": "alias",
        "session": opts.session,
        "user": opts.user,
        "identity": str(identity),
        "host-key": policy,
    }
    if opts.profile:
        meta["profile"] = opts.profile
    hka = f"{opts.session}.{session_id[:8]}.sshkit" if session_id else f"{opts.session}.sshkit"
    blocks = [
        sshkit_host_block(
            alias=opts.alias,
            hostname=opts.session,
            user=opts.user,
            identity_file=str(identity),
            proxy_command=proxycommand_line(relay_argv(launcher, profile=opts.profile), platform),
            host_key=policy,
            known_hosts_file=kh,
            host_key_alias=hka if policy == "pin" else None,
            meta=meta,
        )
    ]
    if opts.wildcard and opts.suffix:
        # A wildcard cannot know the session id, and container host keys change at every start,
        # so it defaults to no checking (documented in docs/ssh-config.md) unless asked.
        wpolicy = opts.host_key or "off"
        wmeta = {
            "kind": "wildcard",
            "suffix": opts.suffix,
            "user": opts.user,
            "identity": str(identity),
            "host-key": wpolicy,
        }
        if opts.profile:
            wmeta["profile"] = opts.profile
        blocks.append(
            sshkit_host_block(
                alias=f"*{opts.suffix}",
                hostname=None,
                user=opts.user,
                identity_file=str(identity),
                proxy_command=proxycommand_line(
                    relay_argv(launcher, suffix=opts.suffix, profile=opts.profile), platform
                ),
                host_key=wpolicy,
                known_hosts_file=kh,
                meta=wmeta,
            )
        )
    if opts.multiplex is not None:
        blocks = _with_multiplex(blocks, opts.multiplex, platform, control_dir())
    return blocks


# 26.1.0-26.3.3 cannot describe a running session (spec §14): no id to pin by.
NO_ID_NOTE = (
    "the server does not say the id of session {session!r} (a known bug of Backend.AI "
    "26.1.0-26.3.3): its host key is pinned by name, so after the session restarts ssh "
    "reports a changed host key; run setup-vscode again then"
)


def session_pin(
    client: BackendClient,
    session: str,
    *,
    wait: float = 0.0,
    notify: Callable[[str], None] | None = None,
) -> tuple[str | None, str | None]:
    """(The session's id when the server tells it, a note when it cannot be had).

    Waits up to `wait` s for a session that is still starting (`notify` gets one line).
    Raises NotFoundError for a missing session, NotRunningError for one that is not
    running, AuthError/NetworkError as the client does.
    """
    from sshkit.services.session_state import wait_until_running

    state = wait_until_running(client, session, wait, notify=notify or (lambda line: None))
    if state.info is None:
        return None, NO_ID_NOTE.format(session=session)
    # An id that changes when the container is (re)started: that is when its host key
    # changes, so the HostKeyAlias (and the pinned key) changes with it.
    return state.info.id, None


def plan_setup(
    opts: SetupOptions, client: BackendClient | None, notify: Callable[[str], None] | None = None
) -> SetupPlan:
    """Plan the set-up (no writes). ``client`` None skips the server checks (tests, offline).

    A session that is still starting is waited for, up to ``opts.wait`` s (``notify`` gets
    one line saying so). Raises NotLoggedInError/NotFoundError (NotRunningError) from the
    server checks, SshConfigError for a config sshkit refuses to edit (ssh already rejects
    it, broken markers), UsageError for bad options.
    """
    session_id, note = (
        session_pin(client, opts.session, wait=opts.wait, notify=notify)
        if client is not None
        else (None, None)
    )
    if opts.identity is not None:
        identity = Path(os.path.abspath(localfs.expand_user(opts.identity)))
        fetch = False
    else:
        from sshkit.services.account import default_key_path

        identity = Path(
            os.path.abspath(default_key_path(client.conn.profile if client else "default"))
        )
        fetch = True
    blocks = build_blocks(opts, identity, session_id=session_id)
    path = opts.ssh_config or default_ssh_dir() / "config"
    refuse_rejected_config(path)
    config = plan_upsert(path, blocks, disable_aliases=[opts.alias])
    return SetupPlan(opts, config, identity, fetch, session_id, [note] if note else [])


def vscode_settings_path() -> Path:
    """VS Code's user settings.json for this platform (it may not exist)."""
    home = localfs.home_dir()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "Code" / "User" / "settings.json"


def update_vscode_settings(alias: str, path: Path | None = None) -> Path | None:
    """Set ``remote.SSH.remotePlatform[alias] = linux`` when the settings file exists.

    Returns the path when it was changed (None when missing or already right). Comments and
    everything else in the file are kept. Raises LocalFileError on an unreadable file.
    """
    path = path or vscode_settings_path()
    data = localfs.read_bytes_if_exists(path)
    if data is None:
        return None
    text = data.decode("utf-8-sig") if data.startswith(b"\xef\xbb\xbf") else data.decode("utf-8")
    new = vscode_settings.set_remote_platform(text, alias, "linux")
    if new == text:
        return None
    localfs.backup_once(path)
    out = new.encode("utf-8")
    if data.startswith(b"\xef\xbb\xbf"):
        out = b"\xef\xbb\xbf" + out
    localfs.atomic_write(path, out)
    return path


def check_effective(config: Path, blocks: list[HostBlock]) -> list[tuple[str, sshcheck.Mismatch]]:
    """Run ``ssh -G`` for each written host and list values that are not sshkit's."""
    if sshcheck.find_ssh() is None:
        return []
    out: list[tuple[str, sshcheck.Mismatch]] = []
    for block in blocks:
        host = block.alias.replace("*", "sshkit-check")
        effective = sshcheck.ssh_g(config, host)
        out.extend((block.alias, m) for m in sshcheck.mismatches(block, host, effective))
    return out


def apply_setup(plan: SetupPlan, client: BackendClient | None) -> SetupResult:
    """Carry out a plan: key, permissions, config, known_hosts dir, checks, .ppk, VS Code.

    Raises the errors of the key download (NotFoundError, AuthError, NetworkError...),
    LocalFileError and SshConfigError. The config is written only after the key is in place.
    """
    result = SetupResult(plan)
    result.notes.extend(plan.notes)
    opts = plan.options
    ssh_dir = default_ssh_dir()
    localfs.ensure_private_dir(ssh_dir)
    if plan.fetch_key:
        if client is None:
            raise UsageError("cannot download the key without a login; pass --identity")
        from sshkit.services.account import fetch_container_key

        fetched = fetch_container_key(client, opts.session, out=plan.identity)
        result.key_fingerprint = fetched.fingerprint
    elif not plan.identity.is_file():
        raise LocalFileError(f"the identity file {plan.identity} does not exist")
    from sshkit.services.perms import fix_permissions

    targets = [plan.identity]
    config_target = localfs.resolve_target(plan.config.path)
    if config_target.is_file():
        targets.append(config_target)  # a group/world-writable config is fatal for ssh
    for change in fix_permissions(targets):
        result.notes.append(f"fixed permissions: {change.describe()}")
    localfs.ensure_private_dir(managed_known_hosts().parent)
    if opts.multiplex is not None:
        _ensure_control_dir(result)
    verify_candidate(plan.config)
    result.backup = write_plan(plan.config)
    result.mismatches = check_effective(plan.config.path, plan.config.blocks)
    if opts.ppk:
        from sshkit.services.keyconv import default_ppk_path, write_ppk

        ppk = default_ppk_path(plan.identity)
        replace = not ppk.is_symlink() and localfs.looks_like_key(
            localfs.read_bytes_if_exists(ppk) or b"PuTTY-User-Key-File-"
        )
        result.ppk_path = write_ppk(plan.identity, force=replace)
    try:
        result.vscode_settings = update_vscode_settings(opts.alias)
    except LocalFileError as exc:
        result.notes.append(f"VS Code settings not updated: {exc.message}")
    return result


def _ensure_control_dir(result: SetupResult) -> None:
    """Create the control socket directory 0700, or make an existing one 0700 again.

    Whoever can write there can put a socket in the master's place. Raises LocalFileError.
    """
    directory = control_dir()
    if localfs.ensure_private_dir(directory):
        return
    mode = directory.stat().st_mode & 0o777
    if mode != 0o700:
        try:
            directory.chmod(0o700)
        except OSError as exc:
            raise LocalFileError(f"cannot make {directory} private: {exc.strerror}") from None
        result.notes.append(f"fixed permissions: {directory} {mode:04o} -> 0700")


def open_vscode(alias: str) -> bool:
    """Run ``code --remote ssh-remote+ALIAS /home/work`` when ``code`` is on PATH."""
    code = shutil.which("code")
    if code is None:
        return False
    subprocess.Popen([code, "--remote", f"ssh-remote+{alias}", REMOTE_FOLDER])
    return True
