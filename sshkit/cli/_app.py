"""The typer application object, shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sshkit",
    help="SSH, SFTP, VS Code, PuTTY and WinSCP access to Backend.AI compute sessions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    rich_markup_mode=None,
)
