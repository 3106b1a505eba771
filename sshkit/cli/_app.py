"""The typer application object, shared by the command modules, and its root options."""

from __future__ import annotations

from typing import Annotated

import typer

from sshkit import __version__
from sshkit.cli._errors import set_debug

app = typer.Typer(
    name="sshkit",
    help="SSH, SFTP, VS Code, PuTTY and WinSCP access to Backend.AI compute sessions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sshkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (never secrets).")
    ] = False,
) -> None:
    """SSH, SFTP, VS Code, PuTTY and WinSCP access to Backend.AI compute sessions."""
    set_debug(debug)
