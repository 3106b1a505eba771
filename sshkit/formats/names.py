"""Session names and host aliases: what sshkit accepts before a name reaches a command line.

A session name ends up as ``HostName`` in ssh_config, as ``%h``/``%host`` in the
proxy commands of OpenSSH, PuTTY and WinSCP (run by ``sh -c`` on Unix and split by
CreateProcess on Windows) and as an argument of ``sshkit relay``. The one rule for
all of them, the one setup-vscode has always applied to ``HostName``: letters,
digits and ``_ . @ + -``, and never a leading ``-`` (it would read as an option:
a session called ``--help`` made ssh run ``sshkit relay --help``). Such names need
no quoting for any shell, and the proxy commands still pass ``--`` before them.
"""

from __future__ import annotations

import re

from sshkit.errors import UsageError

SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.@+:-]+$")


def check_session_name(name: str, what: str = "session name") -> str:
    """Return `name` when it is a session name sshkit can put on a command line.

    Raises UsageError for an empty name, a leading ``-`` or any character
    outside letters, digits and ``_ . @ + -``.
    """
    if not name:
        raise UsageError(f"the {what} is empty")
    if name.startswith("-"):
        raise UsageError(
            f"the {what} {name!r} starts with '-'",
            hint="a name starting with '-' would be read as an option",
        )
    if not SESSION_NAME_RE.match(name):
        raise UsageError(
            f"the {what} {name!r} contains characters sshkit cannot pass safely",
            hint="session names use letters, digits and _ . @ + -",
        )
    return name


def check_alias(alias: str, what: str = "alias") -> str:
    """Return `alias` when it is a plain host alias (no pattern, no leading ``-``).

    Raises UsageError otherwise.
    """
    if not alias:
        raise UsageError(f"the {what} is empty")
    if alias.startswith("-"):
        raise UsageError(f"the {what} {alias!r} starts with '-'")
    if not _ALIAS_RE.match(alias):
        raise UsageError(
            f"the {what} {alias!r} must be a plain name",
            hint="use letters, digits and _ . @ + - :",
        )
    return alias
