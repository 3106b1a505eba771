"""Option types shared by several commands."""

from __future__ import annotations

import enum


class HostKey(enum.StrEnum):
    """`--host-key`: how ssh checks the session's host key."""

    pin = "pin"  # sshkit's own known_hosts, accept-new, per-session HostKeyAlias
    off = "off"  # no checking (container host keys change at every start)
