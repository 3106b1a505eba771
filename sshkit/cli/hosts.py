"""`sshkit hosts list/remove/prune`: the Host blocks sshkit wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_alias
from sshkit.cli._prompt import confirm
from sshkit.errors import UsageError

hosts_app = typer.Typer(
    help="List and remove the Host blocks sshkit wrote into ~/.ssh/config.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(hosts_app, name="hosts")

_CONFIG = typer.Option("--ssh-config", help="The ssh config file (default ~/.ssh/config).")


@hosts_app.command("list")
def hosts_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ssh_config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """List sshkit's Host blocks (the wildcard block too)."""
    from sshkit.services.hosts import list_hosts

    entries = list_hosts(ssh_config)
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    if not entries:
        typer.echo("sshkit manages no hosts in this ssh config.")
        return
    typer.echo(f"{'ALIAS':<20} {'SESSION':<20} {'KIND':<9} {'USER':<8} {'MUX':<6} CONFIG")
    for e in entries:
        typer.echo(
            f"{e.alias:<20} {e.session or '-':<20} {e.kind:<9} {e.user or '-':<8} "
            f"{e.multiplex or '-':<6} {e.config}"
        )


@hosts_app.command("remove")
def hosts_remove(
    aliases: Annotated[
        list[str],
        typer.Argument(help="ALIAS as `hosts list` shows it.", autocompletion=complete_alias),
    ],
    ssh_config: Annotated[Path | None, _CONFIG] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove sshkit's blocks (and re-enable a hand-written block sshkit had disabled).

    In a terminal without --yes, shows the change and asks first. Not a terminal:
    removes (as `setup-vscode` writes); an unknown ALIAS exits 16, changing nothing.
    """
    from sshkit.services.hosts import plan_remove_hosts, remove_hosts

    if not yes and sys.stdin.isatty():
        diff = plan_remove_hosts(aliases, ssh_config).diff()
        typer.echo(diff, nl=False)
        confirm("Apply these changes?", default=True, declined="declined: nothing removed")
    plan = remove_hosts(aliases, ssh_config)
    typer.echo(f"Removed {', '.join(aliases)} from {plan.path}")


@hosts_app.command("prune")
def hosts_prune(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    ssh_config: Annotated[Path | None, _CONFIG] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Login profile.")] = None,
) -> None:
    """Remove blocks whose sessions no longer exist (asks first)."""
    from sshkit.cli._client import open_client
    from sshkit.services.hosts import remove_hosts, stale_hosts

    with open_client(profile) as client:
        stale = stale_hosts(client, ssh_config)
    if not stale:
        typer.echo("Nothing to prune: every session sshkit has a block for still exists.")
        return
    for e in stale:
        typer.echo(f"{e.alias}: session {e.session} no longer exists")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to remove blocks without confirmation", hint="add --yes")
        confirm(
            f"Remove {len(stale)} block(s)?", default=False, declined="declined: nothing removed"
        )
    plan = remove_hosts([e.alias for e in stale], ssh_config)
    typer.echo(f"Removed {', '.join(e.alias for e in stale)} from {plan.path}")
