"""The `sshkit` command line: thin typer commands over the service layer.

Command modules register themselves on the shared app when imported. Heavy
libraries (cryptography, requests, paramiko, websockets) are imported inside
command bodies, never at module level, so `sshkit --help` and `sshkit relay`
start fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sshkit import __version__
from sshkit.cli._app import app
from sshkit.cli._errors import run_guarded, set_debug


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


def _register_commands() -> None:
    """Import every public module of this package: each adds its commands to `app`."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def main() -> None:
    """Console-script entry point."""
    _register_commands()
    run_guarded(app)
