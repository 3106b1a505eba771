"""Small result types of the API client."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_API_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")
_MANAGER_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")

# The newest API version this client speaks; the negotiated version is
# min(server, this), like the official client (protocol spec §4.1).
LATEST_API_VERSION = "v9.20250722"


def parse_api_version(text: str) -> tuple[int, str] | None:
    """`"v8.20240915"` -> `(8, "20240915")`; None when it does not look like one."""
    match = _API_VERSION_RE.match(text.strip())
    return (int(match.group(1)), match.group(2)) if match else None


def parse_manager_version(text: str | None) -> tuple[int, int, int] | None:
    """`"24.03.7"` -> `(24, 3, 7)`; None when absent or unparsable."""
    match = _MANAGER_VERSION_RE.match((text or "").strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class ServerInfo:
    """What the `GET /` probe said (or what was assumed when it said nothing useful)."""

    api_version: str
    manager_version: str | None = None
    probed: bool = True

    @property
    def negotiated_version(self) -> str:
        """min(server, client), as the header `X-BackendAI-Version` carries it."""
        ours = parse_api_version(LATEST_API_VERSION)
        theirs = parse_api_version(self.api_version)
        if theirs is None or ours is None or theirs > ours:
            return LATEST_API_VERSION if theirs is not None else self.api_version
        return self.api_version


@dataclass(frozen=True)
class LoginResult:
    """A successful session-mode login. The session id stays out of the repr."""

    session_id: str = field(repr=False)
    access_key: str | None
    role: str | None
    status: str | None


@dataclass(frozen=True)
class Identity:
    """Who the credentials belong to, as far as the server tells."""

    access_key: str | None
    global_role: str | None = None
    domain_role: str | None = None
    group_role: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


# ------------------------------------------------------------------ server answers
#
# The client checks each answer's shape once, here, so that services read typed fields
# and a malformed answer is one ServerError line, never a KeyError deep in a service.


class MalformedAnswer(ValueError):
    """An answer without the shape the protocol gives it (the client turns it into ServerError)."""


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedAnswer("the answer is not a JSON object")
    return data


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise MalformedAnswer("the answer is not a JSON list")
    return data


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedAnswer(f"its {key!r} is not a string")
    return value


# Fields that hold an id which changes when the session's container is (re)started; the
# first one present is the session's id (spec §8.1 gives `containerId`).
_SESSION_ID_KEYS = ("id", "session_id", "sessionId", "containerId")


@dataclass(frozen=True)
class SessionInfo:
    """What `GET /session/{name}` says that sshkit uses (spec §8.1).

    `status` is the SessionStatus name, None when the answer has none. `id` is an id
    that changes when the container is (re)started, None when the server gives none
    (23.09 sends `containerId` as the string "None" before the container exists).
    """

    status: str | None
    id: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> SessionInfo:
        """Raises MalformedAnswer for a non-object or a non-string status."""
        obj = _object(data)
        status = _optional_str(obj, "status")
        session_id = None
        for key in _SESSION_ID_KEYS:
            value = obj.get(key)
            if isinstance(value, str) and value and value != "None":
                session_id = value
                break
        return cls(status=status, id=session_id)


@dataclass(frozen=True)
class AppInfo:
    """One service app of a session (`GET /stream/session/{name}/apps`, spec §8.2)."""

    name: str
    protocol: str | None = None

    @classmethod
    def list_from_json(cls, data: Any) -> list[AppInfo]:
        """Raises MalformedAnswer for a non-list or an entry without a string name."""
        apps = []
        for item in _list(data):
            obj = _object(item)
            name = obj.get("name")
            if not isinstance(name, str):
                raise MalformedAnswer("an app has no name")
            protocol = obj.get("protocol")
            apps.append(cls(name, protocol if isinstance(protocol, str) else None))
        return apps


@dataclass(frozen=True)
class MatchEntry:
    """One session whose name or id starts with a prefix (`GET /session/_/match`, §8.1)."""

    id: str | None
    name: str | None
    status: str | None

    @classmethod
    def list_from_json(cls, data: Any) -> list[MatchEntry]:
        """Raises MalformedAnswer unless the answer is `{"matches": [objects]}`."""
        out = []
        for item in _list(_object(data).get("matches")):
            obj = _object(item)
            out.append(
                cls(
                    id=_optional_str(obj, "id"),
                    name=_optional_str(obj, "name"),
                    status=_optional_str(obj, "status"),
                )
            )
        return out


@dataclass(frozen=True)
class Keypair:
    """The keypair's SSH key (`GET /auth/ssh-keypair`, spec §7.8): its public half only."""

    ssh_public_key: str | None

    @classmethod
    def from_json(cls, data: Any) -> Keypair:
        """Raises MalformedAnswer for a non-object or a non-string key."""
        text = _optional_str(_object(data), "ssh_public_key")
        return cls(text if text and text.strip() else None)


@dataclass(frozen=True)
class FolderInfo:
    """A storage folder (`GET /folders`, `GET /folders/{name}`, spec §7.1/§7.3)."""

    name: str | None
    # "ro", "rw" or "wd"; None when the answer does not say.
    permission: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> FolderInfo:
        """Raises MalformedAnswer for a non-object or a non-string name."""
        obj = _object(data)
        permission = obj.get("permission")
        return cls(_optional_str(obj, "name"), None if permission is None else str(permission))

    @classmethod
    def list_from_json(cls, data: Any) -> list[FolderInfo]:
        """Raises MalformedAnswer for a non-list or a malformed entry."""
        return [cls.from_json(item) for item in _list(data)]


_OCTAL_MODE = re.compile(r"[0-7]{3,7}")


@dataclass(frozen=True)
class FileEntry:
    """One entry of a folder directory listing (`GET /folders/{name}/files`, spec §7.4).

    `mode` is the permission bits: servers up to 25.5 send "644", later ones the raw
    st_mode (33188); None when absent or neither.
    """

    name: str
    size: int | None = None
    mode: int | None = None

    @classmethod
    def list_from_json(cls, data: Any) -> list[FileEntry]:
        """Raises MalformedAnswer unless the answer is `{"items": [objects with a name]}`."""
        out = []
        for item in _list(_object(data).get("items")):
            obj = _object(item)
            name = obj.get("name")
            if not isinstance(name, str):
                raise MalformedAnswer("a listed file has no name")
            raw_mode, size = obj.get("mode"), obj.get("size")
            mode = None
            if isinstance(raw_mode, str) and _OCTAL_MODE.fullmatch(raw_mode):
                mode = int(raw_mode, 8) & 0o7777
            elif isinstance(raw_mode, int) and not isinstance(raw_mode, bool):
                mode = raw_mode & 0o7777
            sized = isinstance(size, int) and not isinstance(size, bool)
            out.append(cls(name, size if sized else None, mode))
        return out
