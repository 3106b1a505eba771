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
