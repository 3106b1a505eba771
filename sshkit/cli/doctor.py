"""`sshkit doctor [ALIAS]`: one line per check, ✓ or ✗ with a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sshkit.cli._app import app
from sshkit.errors import CheckFailedError, printable

_MARK = {"ok": "✓", "fail": "✗", "skip": "-"}


@app.command("doctor")
def doctor(
    alias: Annotated[
        str,
        typer.Argument(
            help="Host alias sshkit wrote, or SESSION.bai (a session through the wildcard block)."
        ),
    ] = "bai-vscode",
    ssh_config: Annotated[
        Path | None, typer.Option("--ssh-config", help="The ssh config (default ~/.ssh/config).")
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Login profile.")] = None,
) -> None:
    """Check login, key, permissions, ssh config precedence, session and a real SSH login."""
    from sshkit.services.doctor import run_doctor

    report = run_doctor(alias, config=ssh_config, profile=profile)
    for check in report.checks:
        typer.echo(f"{_MARK[check.status]} {check.name}: {printable(check.detail)}")
        if check.hint and check.status == "fail":
            typer.echo(f"    fix: {printable(check.hint)}")
    if report.failed:
        names = ", ".join(c.name for c in report.failed)
        raise CheckFailedError(f"{len(report.failed)} check(s) failed: {names}")
