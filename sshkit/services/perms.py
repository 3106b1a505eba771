"""Check and fix the permissions OpenSSH insists on (key-and-config-formats §6.7).

* `~/.ssh`: 0700; directories under it: not group- or world-writable.
* ssh config files (`config`, `*.conf`): not group- or world-writable, else
  ssh stops with "Bad owner or permissions".
* private keys: no group or other bits at all (0600), else ssh ignores them
  ("UNPROTECTED PRIVATE KEY FILE").

On Windows, modes mean nothing to Win32-OpenSSH, which checks ACLs instead;
`icacls_command` builds the equivalent `icacls` call.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sshkit import localfs
from sshkit.errors import LocalFileError

# Files that start like this are private keys (PEM, OpenSSH, PuTTY).
_PRIVATE_MARKERS = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----",
    b"-----BEGIN RSA PRIVATE KEY-----",
    b"-----BEGIN DSA PRIVATE KEY-----",
    b"-----BEGIN EC PRIVATE KEY-----",
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    b"PuTTY-User-Key-File-",
)

# Well-known SIDs, so the command works on every Windows display language.
SID_SYSTEM = "*S-1-5-18"
SID_ADMINISTRATORS = "*S-1-5-32-544"
SID_EVERYONE = "*S-1-1-0"
SID_AUTHENTICATED_USERS = "*S-1-5-11"
SID_USERS = "*S-1-5-32-545"


@dataclass(frozen=True)
class PermIssue:
    """One path whose mode OpenSSH would complain about, and the mode it should have."""

    path: Path
    kind: str  # "directory" | "subdirectory" | "config" | "private key"
    mode: int
    wanted: int
    reason: str

    def describe(self) -> str:
        return f"{self.path}: {self.kind} is {self.mode:04o}, should be {self.wanted:04o}"


@dataclass(frozen=True)
class PermChange:
    path: Path
    kind: str
    old: int
    new: int

    def describe(self) -> str:
        return f"{self.path}: {self.kind} {self.old:04o} -> {self.new:04o}"


def _default_ssh_dir(environ: Mapping[str, str] | None) -> Path:
    return localfs.ssh_dir(environ)


def is_private_key(path: Path) -> bool:
    """True when the file's first bytes look like a private key."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(_PRIVATE_MARKERS)


def _is_config_name(path: Path) -> bool:
    return path.name == "config" or path.suffix == ".conf"


def wanted_mode(kind: str, mode: int) -> int:
    """The mode a path of `kind` should have, changing as few bits as possible. Pure."""
    if kind == "private key":
        return mode & 0o700
    if kind == "directory":
        return (mode & 0o700) | 0o700
    # configs and subdirectories: only the write bits of others matter
    return mode & ~0o022


def _issue_for(path: Path, kind: str) -> PermIssue | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    want = wanted_mode(kind, mode)
    if want == mode:
        return None
    reason = {
        "private key": "ssh ignores private keys that others can read",
        "directory": "only you should be able to enter ~/.ssh",
        "subdirectory": "others must not be able to change what is in ~/.ssh",
        "config": "ssh refuses a config that others can write",
    }[kind]
    return PermIssue(path, kind, mode, want, reason)


def _scan_dir(directory: Path) -> Iterable[tuple[Path, str]]:
    """The directory itself, then the keys and configs under it (symlinks are skipped)."""
    yield directory, "directory"
    for root, dirs, files in os.walk(directory, followlinks=False):
        base = Path(root)
        dirs.sort()
        for name in dirs:
            if not (base / name).is_symlink():
                yield base / name, "subdirectory"
        for name in sorted(files):
            path = base / name
            if path.is_symlink():
                continue
            if is_private_key(path):
                yield path, "private key"
            elif _is_config_name(path):
                yield path, "config"


def _targets(
    paths: Sequence[Path] | None, environ: Mapping[str, str] | None
) -> list[tuple[Path, str]]:
    if not paths:
        ssh = _default_ssh_dir(environ)
        return list(_scan_dir(ssh)) if ssh.is_dir() else []
    out: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            out.extend(_scan_dir(path))
        elif path.exists():
            out.append((path, "private key" if is_private_key(path) else "config"))
        else:
            raise LocalFileError(f"{path} does not exist")
    return out


def check_permissions(
    paths: Sequence[Path] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[PermIssue]:
    """List what OpenSSH would refuse. With no paths, `~/.ssh` and everything under it.

    An explicit file is treated as a private key when it looks like one and as
    a config otherwise. Raises LocalFileError for a path that does not exist.
    """
    issues: list[PermIssue] = []
    for path, kind in _targets(paths, environ):
        try:
            issue = _issue_for(path, kind)
        except OSError as exc:
            raise LocalFileError(f"cannot inspect {path}: {exc.strerror}") from None
        if issue is not None:
            issues.append(issue)
    return issues


def fix_permissions(
    paths: Sequence[Path] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[PermChange]:
    """Fix what `check_permissions` reports; return the changes made.

    On Windows the ACLs are reset with `icacls` instead (see `icacls_command`).
    Raises LocalFileError when a mode cannot be changed.
    """
    changes: list[PermChange] = []
    if os.name == "nt":
        user = os.environ.get("USERNAME", "")
        for path, kind in _targets(paths, environ):
            _run_icacls(icacls_command(str(path), user=user, directory=kind == "directory"))
        return changes
    for issue in check_permissions(paths, environ=environ):
        try:
            os.chmod(issue.path, issue.wanted)
        except OSError as exc:
            raise LocalFileError(
                f"cannot change the mode of {issue.path}: {exc.strerror}"
            ) from None
        changes.append(PermChange(issue.path, issue.kind, issue.mode, issue.wanted))
    return changes


def icacls_command(path: str, *, user: str, directory: bool = False) -> list[str]:
    """The `icacls` call that gives `path` the ACL Win32-OpenSSH wants. Pure.

    Inheritance is cut (inherited ACEs such as Authenticated Users are the usual
    culprit), then only the user, SYSTEM and Administrators keep full control,
    and the broad groups are removed explicitly. Directories pass the grant on
    to what they contain.
    """
    if not user or any(c in user for c in '"\r\n'):
        raise LocalFileError("cannot fix permissions: the Windows user name is unknown")
    inherit = "(OI)(CI)" if directory else ""
    return [
        "icacls",
        path,
        "/inheritance:r",
        "/grant:r",
        f"{user}:{inherit}(F)",
        "/grant:r",
        f"{SID_SYSTEM}:{inherit}(F)",
        "/grant:r",
        f"{SID_ADMINISTRATORS}:{inherit}(F)",
        "/remove:g",
        SID_EVERYONE,
        SID_AUTHENTICATED_USERS,
        SID_USERS,
    ]


def _run_icacls(argv: list[str]) -> None:  # pragma: no cover - Windows only
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise LocalFileError(
            f"icacls failed for {argv[1]}: {last[-1] if last else proc.returncode}"
        )
