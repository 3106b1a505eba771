"""Stored logins: one small JSON file per profile, mode 0600, bound to its endpoint.

A stored login records the endpoint it was made against (normalised), and
`sshkit.settings` only uses its secrets (session id, secret key) when the
resolved endpoint is that same endpoint: a session id from one server is never
sent to another (the official client's cookie jar has no such binding, protocol
spec §12.13).

Stdlib only: the relay reads this on every ssh connection.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from sshkit._record import Record
from sshkit.errors import ConfigError, LocalFileError
from sshkit.localfs import atomic_write, ensure_private_dir, home_dir

_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FORMAT_VERSION = 1


class StoredLogin(Record):
    """What `sshkit login` remembers for one profile. Secrets stay out of the repr.

    A frozen `Record` (not a dataclass: the relay loads this module).
    """

    _fields = (
        "endpoint",
        "endpoint_type",
        "access_key",
        "secret_key",
        "session_id",
        "api_version",
        "manager_version",
        "username",
        "domain",
        "verify_tls",
        "ca_bundle",
    )
    __slots__ = _fields
    _hidden = frozenset({"secret_key", "session_id"})

    endpoint: str
    endpoint_type: str
    access_key: str | None
    secret_key: str | None
    session_id: str | None
    api_version: str | None
    manager_version: str | None
    username: str | None
    domain: str | None
    verify_tls: bool
    ca_bundle: str | None

    def __init__(
        self,
        endpoint: str,
        endpoint_type: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_id: str | None = None,
        api_version: str | None = None,
        manager_version: str | None = None,
        username: str | None = None,
        domain: str | None = None,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
    ) -> None:
        self._set(
            endpoint=endpoint,
            endpoint_type=endpoint_type,
            access_key=access_key,
            secret_key=secret_key,
            session_id=session_id,
            api_version=api_version,
            manager_version=manager_version,
            username=username,
            domain=domain,
            verify_tls=verify_tls,
            ca_bundle=ca_bundle,
        )


def check_profile_name(profile: str) -> str:
    """Return `profile` if it is a safe name (it becomes a file name); else raise ConfigError."""
    if not _PROFILE_RE.fullmatch(profile):
        raise ConfigError(
            f"invalid profile name {profile!r}",
            hint="use letters, digits, '.', '_' and '-' (64 characters at most)",
        )
    return profile


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where sshkit keeps logins: `$XDG_STATE_HOME/sshkit` (or the platform equivalent)."""
    env = os.environ if environ is None else environ
    if env.get("SSHKIT_STATE_DIR"):
        return Path(env["SSHKIT_STATE_DIR"])
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA")
        return Path(base) / "sshkit" if base else home_dir(env) / "AppData" / "Local" / "sshkit"
    if sys.platform == "darwin" and not env.get("XDG_STATE_HOME"):
        return home_dir(env) / "Library" / "Application Support" / "sshkit"
    base = env.get("XDG_STATE_HOME") or str(home_dir(env) / ".local" / "state")
    return Path(base) / "sshkit"


def login_path(profile: str, environ: Mapping[str, str] | None = None) -> Path:
    """The file that holds `profile`'s stored login."""
    return state_dir(environ) / "logins" / f"{check_profile_name(profile)}.json"


def read_login(profile: str, environ: Mapping[str, str] | None = None) -> StoredLogin | None:
    """Return the stored login of `profile`, or None when there is none.

    Raises ConfigError when the file exists but is unreadable or malformed.
    """
    path = login_path(profile, environ)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read stored login {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != _FORMAT_VERSION:
            raise ValueError("unknown format")
        fields = {k: v for k, v in data.items() if k != "format"}
        login = StoredLogin(**fields)
        if not isinstance(login.endpoint, str) or login.endpoint_type not in ("session", "api"):
            raise ValueError("bad values")
    except (ValueError, TypeError):
        raise ConfigError(
            f"stored login {path} is corrupt", hint="run `sshkit logout` and log in again"
        ) from None
    return login


def write_login(profile: str, login: StoredLogin, environ: Mapping[str, str] | None = None) -> Path:
    """Store `login` for `profile` (0600 file in a 0700 directory); return the path.

    Raises LocalFileError when it cannot be written.
    """
    path = login_path(profile, environ)
    ensure_private_dir(path.parent, 0o700)
    data = {"format": _FORMAT_VERSION, **login.as_dict()}
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
    return path


def delete_login(profile: str, environ: Mapping[str, str] | None = None) -> bool:
    """Forget `profile`'s stored login; return True when there was one.

    Raises LocalFileError when the file exists but cannot be removed.
    """
    path = login_path(profile, environ)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LocalFileError(f"cannot remove {path}: {exc.strerror}") from None
    return True
