"""`sshkit export putty|winscp|filezilla`: set-ups for Windows GUI clients."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_session

if TYPE_CHECKING:
    from sshkit.services.exports import ExportResult

export_app = typer.Typer(
    help="Write a PuTTY, WinSCP or FileZilla set-up for a session.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(export_app, name="export")

_SESSION = typer.Argument(metavar="SESSION", help="Session name.", autocompletion=complete_session)
_OUTPUT = typer.Option("--output", "-o", help="Where to write; '-' writes to stdout.")
_ALIAS = typer.Option("--alias", help="Name of the saved session or site [default: bai-SESSION].")
_USER = typer.Option("--user", help="User to log in as.")
_KEY = typer.Option(
    "--key",
    help="Key to use: a .ppk, or an OpenSSH/PEM key converted to .ppk beside it "
    "[default: the profile's container key, fetched when missing].",
)
_PROFILE = typer.Option("--profile", help="Login profile to use.")
_FORCE = typer.Option("--force", help="Overwrite an existing output file.")


def _emit(result: ExportResult) -> ExportResult:
    """Write the data to stdout when no file was written (``-o -``)."""
    if result.path is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.flush()
    return result


@export_app.command("putty")
def putty(
    session: Annotated[str, _SESSION],
    output: Annotated[Path | None, _OUTPUT] = None,
    alias: Annotated[str | None, _ALIAS] = None,
    user: Annotated[str, _USER] = "work",
    key: Annotated[Path | None, _KEY] = None,
    profile: Annotated[str | None, _PROFILE] = None,
    force: Annotated[bool, _FORCE] = False,
) -> None:
    """Write a PuTTY saved session (.reg) that runs `sshkit relay` as its local proxy.

    Import it with regedit (double-click) or `reg import FILE`; the session then
    appears in PuTTY's list. Default output: ./bai-SESSION.reg.
    """
    from sshkit.cli._client import LazyClient
    from sshkit.services.exports import export_session

    with LazyClient(profile) as backend:
        exported = export_session(
            "putty",
            session,
            output=output,
            alias=alias,
            user=user,
            key=key,
            profile=profile,
            force=force,
            backend=backend,
        )
    result = _emit(exported)
    if result.path is not None:
        typer.echo(f"wrote PuTTY session {result.alias!r} to {result.path}")
        typer.echo(f'import it with: reg import "{result.path}"', err=True)


@export_app.command("winscp")
def winscp(
    session: Annotated[str, _SESSION],
    output: Annotated[Path | None, _OUTPUT] = None,
    alias: Annotated[str | None, _ALIAS] = None,
    user: Annotated[str, _USER] = "work",
    key: Annotated[Path | None, _KEY] = None,
    profile: Annotated[str | None, _PROFILE] = None,
    force: Annotated[bool, _FORCE] = False,
    codepage: Annotated[
        str | None,
        typer.Option(
            "--codepage",
            help="Windows ANSI code page WinSCP reads WinSCP.ini in"
            " [default: mbcs on Windows, cp1252 elsewhere].",
        ),
    ] = None,
) -> None:
    """Write a WinSCP site (WinSCP.ini section) that runs `sshkit relay` as its local proxy.

    Add the section to WinSCP.ini, or start WinSCP with /ini=FILE.
    Default output: ./bai-SESSION.ini.
    """
    from sshkit.cli._client import LazyClient
    from sshkit.services.exports import export_session

    with LazyClient(profile) as backend:
        exported = export_session(
            "winscp",
            session,
            output=output,
            alias=alias,
            user=user,
            key=key,
            profile=profile,
            force=force,
            codepage=codepage,
            backend=backend,
        )
    result = _emit(exported)
    if result.path is not None:
        typer.echo(f"wrote WinSCP site {result.alias!r} to {result.path}")


@export_app.command("filezilla")
def filezilla(
    session: Annotated[str, _SESSION],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="sitemanager.xml to merge into ('-' for stdout) "
            "[default: FileZilla's own sitemanager.xml].",
        ),
    ] = None,
    alias: Annotated[str | None, _ALIAS] = None,
    user: Annotated[str, _USER] = "work",
    key: Annotated[Path | None, _KEY] = None,
    profile: Annotated[str | None, _PROFILE] = None,
    port: Annotated[
        int, typer.Option("--port", help="Local port of `sshkit forward SESSION -b PORT`.")
    ] = 9922,
) -> None:
    """Add a FileZilla site for `sshkit forward`'s local port, keeping every other site.

    FileZilla cannot run a proxy command: start `sshkit forward SESSION -b PORT`
    before connecting. A site with the same name is replaced.
    """
    from sshkit.cli._client import LazyClient
    from sshkit.services.exports import export_session

    with LazyClient(profile) as backend:
        exported = export_session(
            "filezilla",
            session,
            output=output,
            alias=alias,
            user=user,
            key=key,
            profile=profile,
            port=port,
            backend=backend,
        )
    result = _emit(exported)
    if result.path is not None:
        verb = "replaced" if result.replaced else "added"
        typer.echo(
            f"{verb} FileZilla site {result.alias!r} in {result.path} "
            f"({result.kept_sites} other site(s) kept)"
        )
        typer.echo(f"before connecting, run: sshkit forward {session} -b {port}", err=True)
