"""`sshkit doctor [ALIAS]`: one line per check, ✓ or ✗ with a fix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_alias
from sshkit.errors import CheckFailedError, printable

if TYPE_CHECKING:
    from sshkit.services.doctor import DoctorReport

_MARK = {"ok": "✓", "fail": "✗", "skip": "-"}


@app.command("doctor")
def doctor(
    alias: Annotated[
        str,
        typer.Argument(
            help="Host alias sshkit wrote, or SESSION.bai (a session through the wildcard block).",
            autocompletion=complete_alias,
        ),
    ] = "bai-vscode",
    ssh_config: Annotated[
        Path | None, typer.Option("--ssh-config", help="The ssh config (default ~/.ssh/config).")
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Login profile.")] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object: each check's name, ok, detail, hint."),
    ] = False,
) -> None:
    """Check login, key, permissions, ssh config precedence, session and a real SSH login.

    The verdict is `ssh -F CONFIG -o BatchMode=yes ALIAS true`; a failure is then retraced
    to name its stage. Exit 14 when a check fails (with --json too).
    """
    from sshkit.cli._client import LazyClient
    from sshkit.services.doctor import run_doctor

    with LazyClient(profile) as backend:
        report = run_doctor(alias, config=ssh_config, profile=profile, backend=backend)
    if as_json:
        _print_json(report)
    else:
        _print_text(report)
    if report.failed:
        names = ", ".join(c.name for c in report.failed)
        raise CheckFailedError(f"{len(report.failed)} check(s) failed: {names}")


def _print_json(report: DoctorReport) -> None:
    import json

    checks = [
        {
            "name": c.name,
            "ok": c.status == "ok",
            "status": c.status,
            "detail": printable(c.detail),
            "hint": printable(c.hint) if c.hint and c.status == "fail" else None,
        }
        for c in report.checks
    ]
    doc = {"alias": report.alias, "config": str(report.config), "ok": not report.failed}
    typer.echo(json.dumps({**doc, "checks": checks}, indent=2, ensure_ascii=False))


def _print_text(report: DoctorReport) -> None:
    for check in report.checks:
        typer.echo(f"{_MARK[check.status]} {check.name}: {printable(check.detail)}")
        if check.hint and check.status == "fail":
            typer.echo(f"    fix: {printable(check.hint)}")
