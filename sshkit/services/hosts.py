"""`sshkit hosts list/remove/prune`: the Host blocks sshkit wrote into an ssh_config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sshkit.errors import NotFoundError, UnknownHostError
from sshkit.services.sshconfig_edit import (
    ConfigPlan,
    default_ssh_config,
    plan_remove,
    read_config,
    write_plan,
)

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient


@dataclass(frozen=True)
class HostEntry:
    """One sshkit block: ``alias`` is the Host pattern (``*.bai`` for the wildcard)."""

    alias: str
    session: str | None
    kind: str
    config: Path
    user: str | None
    identity: str | None
    host_key: str | None
    hostname: str | None
    proxy_command: str | None
    profile: str | None
    # ControlPersist time of a multiplexed block (setup-vscode --multiplex), else None.
    multiplex: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "alias": self.alias,
            "session": self.session,
            "kind": self.kind,
            "config": str(self.config),
            "user": self.user,
            "identity": self.identity,
            "host_key": self.host_key,
            "hostname": self.hostname,
            "proxy_command": self.proxy_command,
            "profile": self.profile,
            "multiplex": self.multiplex,
        }


def _multiplex(opts: dict[str, str]) -> str | None:
    """The ControlPersist time when the block shares connections through a master."""
    if opts.get("controlmaster", "no").lower() in ("no", "false"):
        return None
    return opts.get("controlpersist") or "no"


def list_hosts(config: Path | None = None) -> list[HostEntry]:
    """The sshkit blocks of ``config`` (default ``~/.ssh/config``), in file order.

    A missing file has none. Raises SshConfigError for broken markers.
    """
    path = config or default_ssh_config()
    _data, cfg = read_config(path)
    out: list[HostEntry] = []
    for block in cfg.managed_blocks():
        opts = {k.lower(): v for k, v in reversed(cfg.block_options(block))}
        meta = block.meta
        kind = meta.get("kind") or ("wildcard" if "*" in block.alias else "alias")
        session = meta.get("session") or (opts.get("hostname") if kind == "alias" else None)
        out.append(
            HostEntry(
                alias=block.alias,
                session=session,
                kind=kind,
                config=path,
                user=meta.get("user") or opts.get("user"),
                identity=meta.get("identity"),
                host_key=meta.get("host-key"),
                hostname=opts.get("hostname"),
                proxy_command=opts.get("proxycommand"),
                profile=meta.get("profile"),
                multiplex=_multiplex(opts),
            )
        )
    return out


def plan_remove_hosts(aliases: list[str], config: Path | None = None) -> ConfigPlan:
    """Plan removing the given blocks.

    Raises UnknownHostError for an alias sshkit did not write, SshConfigError for
    broken markers.
    """
    require_known(aliases, config)
    return plan_remove(config or default_ssh_config(), aliases)


def remove_hosts(aliases: list[str], config: Path | None = None) -> ConfigPlan:
    """Remove the given sshkit blocks (and re-enable hand-written lines they disabled).

    Removing every block restores the file byte for byte as it was before sshkit edited it.
    Raises UnknownHostError (unknown alias) or SshConfigError (broken markers) with
    nothing written.
    """
    plan = plan_remove_hosts(aliases, config)
    write_plan(plan)
    return plan


def session_exists(client: BackendClient, session: str) -> bool:
    """True when the server knows ``session``; False on NotFoundError (others propagate)."""
    from sshkit.services.session_state import session_state

    try:
        # session_state, not get_session: 26.1.0-26.3.3 answer 500 for running sessions.
        session_state(client, session)
    except NotFoundError as exc:
        # A name shared by several sessions is not a stale one.
        return bool(exc.error_type and exc.error_type.endswith("too-many-sessions-matched"))
    return True


def stale_hosts(client: BackendClient, config: Path | None = None) -> list[HostEntry]:
    """Concrete-alias blocks whose session no longer exists (wildcards never go stale)."""
    stale: list[HostEntry] = []
    for entry in list_hosts(config):
        if entry.kind == "alias" and entry.session and not session_exists(client, entry.session):
            stale.append(entry)
    return stale


def require_known(aliases: list[str], config: Path | None = None) -> None:
    """Raise UnknownHostError naming the first alias sshkit does not manage."""
    known = {e.alias for e in list_hosts(config)}
    for alias in aliases:
        if alias not in known:
            raise UnknownHostError(
                f"sshkit manages no host {alias!r} in {config or default_ssh_config()}",
                hint="`sshkit hosts list` shows the names sshkit wrote",
            )
