"""`sshkit push-authorized-keys` and `sshkit authorized-keys list`."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sshkit.cli._app import app
from sshkit.cli._client import open_client
from sshkit.cli._complete import complete_session
from sshkit.cli._prompt import ask, confirm
from sshkit.errors import UsageError, printable

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient
    from sshkit.services.authorized_keys import KeypairPlan, ListResult, PushResult

_PROFILE = typer.Option("--profile", help="Login profile to use.")
_FOLDER = typer.Option(
    "--folder", metavar="FOLDER", help="The storage folder holding authorized_keys."
)

keys_app = typer.Typer(
    help="Look at the public keys sessions accept.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(keys_app, name="authorized-keys")


class Target(enum.StrEnum):
    folder = "folder"
    keypair = "keypair"
    session = "session"


@app.command("push-authorized-keys")
def push_authorized_keys(
    pubkey_files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PUBKEY_FILE",
            help="Public key files (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub).",
        ),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", metavar="LINE", help="A public key line to add (repeatable)."),
    ] = None,
    folder: Annotated[str, _FOLDER] = ".ssh",
    to: Annotated[Target, typer.Option("--to", help="Where the keys go.")] = Target.folder,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="SESSION",
            help="The running session (--to session).",
            autocompletion=complete_session,
        ),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option("--remove", metavar="FINGERPRINT", help="Remove this key (SHA256:...)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resulting file's diff; upload nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (--to keypair uploads a private key).")
    ] = False,
    profile: Annotated[str | None, _PROFILE] = None,
) -> None:
    """Add your public key(s) to authorized_keys without disturbing what is there.

    \b
    --to folder (default): the `.ssh` storage folder, mounted into new sessions.
    --to session: a running session's ~/.ssh/authorized_keys.
    --to keypair: your keypair's SSH key (uploads the PRIVATE key; asks first).
    """
    from sshkit.formats.authorized_keys import normalize_fingerprint
    from sshkit.services import authorized_keys as svc

    files, lines = list(pubkey_files or []), list(key or [])
    fingerprints = [normalize_fingerprint(fp) for fp in remove or []]
    if to is Target.session and not session:
        raise UsageError("--to session needs --session SESSION")
    if session and to is not Target.session:
        raise UsageError("--session only goes with --to session")
    if session:
        from sshkit.formats.names import check_session_name

        check_session_name(session)
    if to is Target.keypair:
        _push_keypair(files, lines, fingerprints, dry_run=dry_run, yes=yes, profile=profile)
        return
    keys = svc.collect_keys(files, lines, default_dir=None if fingerprints else svc.ssh_dir())
    with open_client(profile) as client:
        guard = _removal_guard(client, fingerprints, yes=yes)
        if to is Target.session:
            assert session is not None
            result = svc.push_to_session(
                client, session, keys, fingerprints, dry_run=dry_run, **guard
            )
        else:
            result = svc.push_to_folder(
                client, keys, fingerprints, folder=folder, dry_run=dry_run, **guard
            )
    _report(result)


def _removal_guard(client: BackendClient, fingerprints: list[str], *, yes: bool) -> dict[str, Any]:
    """`protected`/`confirm` for push: removing the keypair's key or the last usable key
    asks first (in a terminal), and is refused off a terminal without --yes."""
    if not fingerprints or yes:
        return {"confirm": lambda _reason: True}
    from sshkit.services import authorized_keys as svc

    def ask_removal(reason: str) -> bool:
        if not sys.stdin.isatty():
            return False
        typer.echo(f"sshkit: {reason}", err=True)
        confirm("Remove it anyway?", default=False, declined="nothing was changed")
        return True

    own = svc.current_keypair_fingerprint(client)
    return {"protected": [own] if own else [], "confirm": ask_removal}


def _push_keypair(
    files: list[Path],
    lines: list[str],
    remove: list[str],
    *,
    dry_run: bool,
    yes: bool,
    profile: str | None,
) -> None:
    from sshkit.services import authorized_keys as svc

    if lines or remove or len(files) > 1:
        raise UsageError("--to keypair takes one PUBKEY_FILE (its private key sits next to it)")
    public_path = files[0] if files else svc.default_public_key(svc.ssh_dir())
    with open_client(profile) as client:
        plan = svc.plan_keypair(client, public_path, passphrase=_ask_passphrase)
        if plan.current_fingerprint == plan.public.fingerprint:
            _report(svc.upload_keypair(client, plan))  # already the keypair's key: no upload
            return
        typer.echo(_keypair_notice(plan), err=True)
        if dry_run:
            typer.echo("dry run: nothing uploaded")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "refusing to upload a private key without confirmation",
                    hint="run it in a terminal, or pass --yes",
                )
            confirm(
                "Upload this private key?", default=False, declined="declined: nothing uploaded"
            )
        _report(svc.upload_keypair(client, plan))


def _keypair_notice(plan: KeypairPlan) -> str:
    current = plan.current_fingerprint or "none"
    return (
        f"This uploads your PRIVATE key {plan.private_path} ({plan.public.fingerprint}) to the "
        "server, unencrypted. New sessions get it as ~/.ssh/id_rsa and ~/id_container, and "
        f"accept the key for SSH logins. It replaces the keypair's SSH key ({current}); running "
        "sessions keep their old one (use --to session for them)."
    )


def _ask_passphrase() -> bytes | None:
    if not sys.stdin.isatty():
        return None
    return ask("Passphrase for the private key", hide=True).encode()


def _report(result: PushResult) -> None:
    if result.dry_run:
        if result.would_create_folder:
            typer.echo(f"dry run: the folder {result.folder!r} does not exist; it would be created")
        typer.echo(result.diff, nl=False)
        if not result.diff:
            typer.echo(f"dry run: {result.target} would not change")
        return
    if result.created_folder:
        typer.echo(f"created the folder {result.folder!r}")
    for entry in result.added:
        typer.echo(
            printable(f"added {entry.key_type} {entry.fingerprint} {entry.comment}".rstrip())
        )
    for entry in result.already_present:
        typer.echo(
            printable(
                f"already there: {entry.key_type} {entry.fingerprint} {entry.comment}".rstrip()
            )
        )
    for entry in result.removed:
        typer.echo(
            printable(f"removed {entry.key_type} {entry.fingerprint} {entry.comment}".rstrip())
        )
    if not result.uploaded:
        typer.echo(f"{result.target}: nothing to change, nothing uploaded")
    else:
        typer.echo(f"updated {result.target}")
    for warning in result.warnings:
        typer.echo(f"sshkit: warning: {printable(warning)}", err=True)


@keys_app.command("list")
def list_keys(
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="SESSION",
            help="List a running session's file instead.",
            autocompletion=complete_session,
        ),
    ] = None,
    folder: Annotated[str, _FOLDER] = ".ssh",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    profile: Annotated[str | None, _PROFILE] = None,
) -> None:
    """List each key's type, bits, fingerprint and comment."""
    from sshkit.services import authorized_keys as svc

    with open_client(profile) as client:
        if session:
            result = svc.list_session_keys(client, session)
        else:
            result = svc.list_folder_keys(client, folder)
    typer.echo(_render_list(result, as_json=as_json), nl=False)


def _render_list(result: ListResult, *, as_json: bool) -> str:
    rows = []
    for number, line in enumerate(result.document.lines, 1):
        if line.key is None:
            continue
        rows.append(
            {
                "line": number,
                "type": line.key.key_type,
                "bits": line.key.bits,
                "fingerprint": line.key.fingerprint,
                "comment": line.key.comment,
                "options": line.key.options,
            }
        )
    if as_json:
        return (
            json.dumps({"file": result.target, "exists": result.exists, "keys": rows}, indent=2)
            + "\n"
        )
    if not result.exists:
        return f"{result.target} does not exist\n"
    if not rows:
        return f"{result.target} holds no keys\n"
    out = []
    for row in rows:
        opts = f"  [{row['options']}]" if row["options"] else ""
        bits = row["bits"] or "-"
        text = f"{row['type']:<26} {bits:>5}  {row['fingerprint']}  {row['comment']}{opts}"
        out.append(text.rstrip())
    return "\n".join(out) + "\n"
