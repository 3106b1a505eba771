"""The typer application object, shared by the command modules, and its root options."""

from __future__ import annotations

from typing import Annotated, Any

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


def command() -> Any:
    """The click command behind `app`, ready to run (`command()()` parses sys.argv).

    typer gives its `--install-completion`/`--show-completion` flags a default of None,
    which it then coerces on every run through its pydantic adapter: importing pydantic
    costs more than the rest of `sshkit --help`. A default of False is what the flags
    mean and needs no coercion. Calling the command directly also leaves out typer's
    rich traceback hook: a bug's traceback stays plain text.
    """
    import typer.main

    cmd = typer.main.get_command(app)
    for param in cmd.params:
        if param.name in ("install_completion", "show_completion") and param.default is None:
            param.default = False
    return cmd
