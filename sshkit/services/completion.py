"""Values for shell completion: session names from the server, host aliases from the config.

Completion runs on every Tab press, so it must be quick and silent: the server gets a
short deadline, answers are cached for a few seconds in a small file, and any failure
(not logged in, server down, a broken config) completes nothing instead of printing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sshkit import localfs
from sshkit.errors import SshkitError

if TYPE_CHECKING:
    from sshkit.settings import Connection

# Seconds the server may take before completion gives up (a Tab press must not hang).
SERVER_TIMEOUT = 2.0
# How long a server answer stays valid, and how many prefixes the cache keeps.
CACHE_SECONDS = 30.0
CACHE_ENTRIES = 16
# Sessions in these states cannot be reached: not worth offering.
_DEAD = {"TERMINATED", "CANCELLED", "ERROR"}


def cache_file() -> Path:
    """The cache of recent answers, beside nothing secret: `$XDG_CACHE_HOME/sshkit/`."""
    import os

    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else localfs.home_dir() / ".cache"
    return base / "sshkit" / "completion.json"


def _load(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def session_names(
    prefix: str,
    profile: str | None = None,
    *,
    fetch: Callable[[str, Connection], list[str]] | None = None,
    now: Callable[[], float] = time.time,
    cache: Path | None = None,
) -> list[str]:
    """Names of your live sessions starting with `prefix` (the server's first ten).

    `fetch(prefix, conn)` asks the server (default: `GET /session/_/match`). Answers
    are cached per endpoint, profile and prefix for CACHE_SECONDS. Never raises.
    """
    path = cache or cache_file()
    try:
        from sshkit.settings import load_connection

        conn = load_connection(profile)
    except (SshkitError, OSError):
        return []
    key = f"{conn.endpoint} {conn.profile} {prefix}"
    entries = _load(path)
    hit = entries.get(key)
    cached = hit.get("names") if isinstance(hit, dict) else None
    if isinstance(cached, list) and 0 <= now() - _at(hit) < CACHE_SECONDS:
        return [str(n) for n in cached if str(n).startswith(prefix)]
    try:
        names = (fetch or _fetch)(prefix, conn)
    except (SshkitError, OSError):
        return []
    entries[key] = {"at": now(), "names": names}
    newest = sorted(entries.items(), key=lambda kv: _at(kv[1]), reverse=True)[:CACHE_ENTRIES]
    try:
        localfs.ensure_private_dir(path.parent)
        localfs.atomic_write(path, json.dumps(dict(newest)).encode(), mode=0o600)
    except (SshkitError, OSError):
        pass  # a cache that cannot be written only makes the next Tab slower
    return names


def _at(entry: object) -> float:
    at = entry.get("at") if isinstance(entry, dict) else None
    return float(at) if isinstance(at, (int, float)) else 0.0


def _fetch(prefix: str, conn: Connection) -> list[str]:
    from sshkit.api.client import BackendClient

    # Completion's own client: a Tab press gets a short timeout, not a command's.
    with BackendClient(conn, timeout=SERVER_TIMEOUT) as client:
        matches = client.match_sessions(prefix)
    names = []
    for m in matches:
        name, status = m.name, (m.status or "").upper()
        # A name the shell would split or print raw is not offered.
        usable = name is not None and name.isprintable() and len(name.split()) == 1
        if name is not None and usable and name.startswith(prefix) and status not in _DEAD:
            names.append(name)
    return sorted(set(names))


def host_aliases(prefix: str, config: Path | None = None) -> list[str]:
    """The aliases `hosts list` shows that start with `prefix`. Never raises."""
    from sshkit.services.hosts import list_hosts

    try:
        entries = list_hosts(config)
    except (SshkitError, OSError):
        return []
    return [e.alias for e in entries if e.alias.startswith(prefix)]
