"""`sshkit setup-vscode`: Host blocks for VS Code Remote-SSH and plain ssh/scp/sftp."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_session
from sshkit.cli._options import HostKey
from sshkit.cli._prompt import confirm
from sshkit.errors import CheckFailedError, UsageError

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient
    from sshkit.services.vscode import SetupOptions, SetupResult


@app.command("setup-vscode")
def setup_vscode(
    session: Annotated[
        str,
        typer.Argument(help="The compute session to reach.", autocompletion=complete_session),
    ],
    alias: Annotated[str, typer.Option("--alias", help="Host name to write.")] = "bai-vscode",
    user: Annotated[str, typer.Option("--user", help="User inside the container.")] = "work",
    identity: Annotated[
        Path | None, typer.Option("--identity", help="Use this private key; do not download.")
    ] = None,
    ssh_config: Annotated[
        Path | None, typer.Option("--ssh-config", help="Edit this file, not ~/.ssh/config.")
    ] = None,
    suffix: Annotated[
        str, typer.Option("--suffix", help="Wildcard Host *SUFFIX for any session.")
    ] = ".bai",
    host_key: Annotated[
        HostKey | None,
        typer.Option(
            "--host-key",
            help="pin: managed known_hosts + accept-new (default for the alias); "
            "off: no host-key checking (default for the wildcard).",
        ),
    ] = None,
    ppk: Annotated[bool, typer.Option("--ppk", help="Also write the key as .ppk.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print a unified diff; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    open_code: Annotated[
        bool, typer.Option("--open", help="Then run `code --remote ssh-remote+ALIAS`.")
    ] = False,
    profile: Annotated[str | None, typer.Option("--profile", help="Login profile.")] = None,
    multiplex: Annotated[
        bool,
        typer.Option(
            "--multiplex",
            help="Share one connection between ssh commands (ControlMaster; not on Windows). "
            "For many short connections: scripts, Ansible, git.",
        ),
    ] = False,
    multiplex_persist: Annotated[
        str | None,
        typer.Option(
            "--multiplex-persist",
            help="With --multiplex: keep an idle connection this long (default 10m).",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for a session that is still starting."),
    ] = 120.0,
) -> None:
    """Write `Host ALIAS` and `Host *SUFFIX` into ~/.ssh/config, placed so that they win.

    Not a terminal and no --yes: sshkit proceeds (the change is undone by
    `sshkit hosts remove`), except that it never disables your own hand-written
    block for ALIAS without --yes.
    """
    from sshkit.cli._client import open_client
    from sshkit.services import vscode as svc

    if multiplex_persist is not None and not multiplex:
        raise UsageError("--multiplex-persist needs --multiplex")
    if multiplex:
        svc.refuse_multiplex_on(svc.current_platform())
    with open_client(profile) as client:
        opts = svc.SetupOptions(
            session=session,
            alias=alias,
            user=user,
            identity=identity,
            ssh_config=ssh_config,
            suffix=suffix,
            host_key=host_key.value if host_key else None,
            ppk=ppk,
            profile=profile,
            multiplex=(multiplex_persist or svc.DEFAULT_MULTIPLEX_PERSIST) if multiplex else None,
            wait=wait,
        )
        if wait < 0:
            raise UsageError("--wait must be 0 or more seconds")
        result = _plan_and_apply(client, opts, dry_run=dry_run, yes=yes)
    if result is None:
        return
    _report(result)
    if open_code and not svc.open_vscode(alias):
        typer.echo("sshkit: `code` is not on PATH; open VS Code and pick the host.", err=True)
    if result.mismatches:
        raise CheckFailedError(
            f"ssh -G shows {len(result.mismatches)} value(s) that are not sshkit's",
            hint="see the lines above; `sshkit doctor` explains where they come from",
        )


def _plan_and_apply(
    client: BackendClient, opts: SetupOptions, *, dry_run: bool, yes: bool
) -> SetupResult | None:
    """Plan, show or ask, then apply; None for a dry run. Raises what the service raises,
    and DeclinedError when the user says no."""
    from sshkit.services import vscode as svc

    plan = svc.plan_setup(opts, client, notify=lambda line: typer.echo(f"sshkit: {line}", err=True))
    cfg = plan.config
    for hb in cfg.disabled:
        typer.echo(
            f"sshkit: your own 'Host {hb.alias}' block (lines {hb.start + 1}-{hb.end + 1} of "
            f"{cfg.path}) would still add its options; sshkit disables it (restorably: "
            f"`sshkit hosts remove {hb.alias}` brings it back).",
            err=True,
        )
    if dry_run:
        typer.echo(cfg.diff() or f"No changes to make to {cfg.path}.", nl=not cfg.diff())
        return None
    if not yes:
        if sys.stdin.isatty():
            typer.echo(cfg.diff() or f"No changes to make to {cfg.path}.", nl=not cfg.diff())
            confirm(
                "Apply these changes?", default=True, declined=f"declined: {cfg.path} unchanged"
            )
        elif cfg.disabled:
            raise UsageError(
                f"refusing to disable your own 'Host {opts.alias}' block without consent",
                hint="rerun with --yes (or use --alias with another name)",
            )
    return svc.apply_setup(plan, client)


def _report(result: SetupResult) -> None:
    plan = result.plan
    opts = plan.options
    if plan.config.changed:
        typer.echo(f"Wrote Host {opts.alias} and Host *{opts.suffix} to {plan.config.path}")
    else:
        typer.echo(f"{plan.config.path} already up to date")
    if result.backup:
        typer.echo(f"Backup of the original: {result.backup}")
    if result.key_fingerprint:
        typer.echo(f"Key: {plan.identity} ({result.key_fingerprint})")
    if result.ppk_path:
        typer.echo(f"PuTTY key: {result.ppk_path}")
    if result.vscode_settings:
        typer.echo(f"VS Code: remote.SSH.remotePlatform[{opts.alias}] = linux")
    if opts.multiplex is not None:
        typer.echo(
            f"Multiplexed: ssh commands to a host share one connection, kept {opts.multiplex} "
            f"after the last one (end it now: ssh -O exit {opts.alias})"
        )
    for note in result.notes:
        typer.echo(f"sshkit: {note}", err=True)
    for alias, m in result.mismatches:
        typer.echo(
            f"sshkit: warning: for {alias}, ssh uses {m.key} {m.actual!r}, "
            f"not sshkit's {m.expected!r}",
            err=True,
        )
    typer.echo(f"Connect: ssh {opts.alias}   (or any session: ssh SESSION{opts.suffix})")
