"""`sshkit fetch-key` and `sshkit fix-perms`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_session
from sshkit.errors import CheckFailedError


@app.command("fetch-key")
def fetch_key(
    session: Annotated[
        str, typer.Argument(help="Session name or id.", autocompletion=complete_session)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the key (default: ~/.ssh/sshkit/PROFILE/)."
        ),
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Login profile.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write even through a symlink or over a file that is not a key."
        ),
    ] = False,
) -> None:
    """Download the session's SSH key (id_container) and save it with mode 0600.

    The key belongs to your access key, so one file serves all your sessions.
    Example: sshkit fetch-key my-session
    """
    from sshkit.cli._client import open_client
    from sshkit.services.account import fetch_container_key

    with open_client(profile) as client:
        result = fetch_container_key(client, session, output, force=force)
    if result.backup:
        typer.echo(f"Kept the previous key as {result.backup}")
    state = "Saved" if result.changed else "Unchanged:"
    typer.echo(f"{state} {result.path} (mode 0600)")
    kind = f" ({result.key_type} {result.bits})" if result.key_type else ""
    typer.echo(f"{result.fingerprint or 'fingerprint unknown (encrypted key)'}{kind}")


@app.command("fix-perms")
def fix_perms(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[PATH]...", help="Files or directories (default: ~/.ssh)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only report; exit 14 when something is wrong.")
    ] = False,
) -> None:
    """Give ~/.ssh, ssh configs and private keys the modes OpenSSH insists on.

    ~/.ssh 0700, configs not group/world-writable, private keys 0600.
    Example: sshkit fix-perms --check
    """
    from sshkit.services.perms import check_permissions, fix_permissions

    if check:
        issues = check_permissions(paths or None)
        for issue in issues:
            typer.echo(f"{issue.describe()} ({issue.reason})")
        if issues:
            raise CheckFailedError(
                f"{len(issues)} permission problem(s) found", hint="run `sshkit fix-perms`"
            )
        typer.echo("Permissions are fine.")
        return
    changes = fix_permissions(paths or None)
    for change in changes:
        typer.echo(f"fixed {change.describe()}")
    if not changes:
        typer.echo("Permissions are fine; nothing changed.")
