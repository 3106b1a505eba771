"""Shell-completion callbacks for typer: session names and host aliases.

They only adapt typer's call to `sshkit.services.completion`, which keeps the server
deadline, the cache and the never-fail rule.
"""

from __future__ import annotations

from pathlib import Path

import typer


def complete_session(ctx: typer.Context, incomplete: str) -> list[str]:
    """Session names from the server for the profile given so far on the command line."""
    from sshkit.services.completion import session_names

    profile = ctx.params.get("profile")
    return session_names(incomplete, profile if isinstance(profile, str) else None)


def complete_alias(ctx: typer.Context, incomplete: str) -> list[str]:
    """Aliases sshkit wrote into the ssh config given so far (default ~/.ssh/config)."""
    from sshkit.services.completion import host_aliases

    config = ctx.params.get("ssh_config")
    return host_aliases(incomplete, Path(config) if config else None)
