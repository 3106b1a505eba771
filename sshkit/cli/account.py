"""`sshkit login`, `sshkit logout` and `sshkit whoami`."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._prompt import ask, confirm
from sshkit.errors import LoginLimitError, OtpRequiredError, UsageError, printable

if TYPE_CHECKING:
    from sshkit.services.account import LoginOutcome
    from sshkit.settings import Settings

_PROFILE = typer.Option("--profile", help="Login profile (default: 'default').")


class EndpointKind(enum.StrEnum):
    session = "session"
    api = "api"


def _read_secret_from_stdin(what: str) -> str:
    data = sys.stdin.read()
    if data.endswith("\n"):
        data = data[:-1]
    if data.endswith("\r"):
        data = data[:-1]
    if not data:
        raise UsageError(f"no {what} on standard input")
    return data


# What to pass instead of answering each prompt.
_NO_TTY_FLAG = {
    "User name": "--username",
    "Password": "--password-stdin (or set SSHKIT_PASSWORD)",
    "Access key": "--access-key",
    "Secret key": "--password-stdin (it reads the secret key in api mode)",
}


def _ask(label: str, *, hide: bool = False) -> str:
    """Prompt for `label` on the terminal; raises UsageError (exit 2) when there is none."""
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask for the {label.lower()}: pass {_NO_TTY_FLAG[label]}")
    return ask(label, hide=hide)


@app.command("login")
def login(
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Webserver (session) or manager (api) URL.")
    ] = None,
    endpoint_type: Annotated[
        EndpointKind | None,
        typer.Option("--endpoint-type", help="session: user name + password; api: keypair."),
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", help="User name (e-mail), session mode.")
    ] = None,
    access_key: Annotated[
        str | None, typer.Option("--access-key", help="Access key, api mode.")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password (session mode) or secret key (api mode) from stdin.",
        ),
    ] = False,
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure/--no-insecure",
            help="Do not verify the server's TLS certificate (--no-insecure: verify, even if"
            " the environment or config file says insecure). Never taken from a stored login.",
            show_default=False,
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            help="CA certificates to verify TLS with: a PEM file, or a directory of them"
            " with OpenSSL hash links (`openssl rehash DIR`).",
        ),
    ] = None,
    otp: Annotated[
        str | None,
        typer.Option("--otp", help="One-time code (TOTP) for accounts with two-factor login."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="At the account's concurrent-login limit, end the oldest login."
        ),
    ] = False,
    profile: Annotated[str | None, _PROFILE] = None,
) -> None:
    """Log in to Backend.AI and remember the login (0600, bound to this endpoint).

    Example: printf '%s' "$PASSWORD" | sshkit login --endpoint https://webui.example.com
    --endpoint-type session --username me@example.com --password-stdin
    """
    from sshkit.settings import resolve_settings

    flags: dict[str, str | None] = {
        "endpoint": endpoint,
        "endpoint_type": endpoint_type.value if endpoint_type else None,
        "username": username,
        "access_key": access_key,
        "insecure": None if insecure is None else ("yes" if insecure else "no"),
        "ca_bundle": str(ca_bundle) if ca_bundle else None,
    }
    settings = resolve_settings(profile, flags=flags, tls_from_login=False)
    if not settings.value("endpoint"):
        raise UsageError("no endpoint to log in to", hint="pass --endpoint URL")
    if settings.values["endpoint_type"].source == "default" and username:
        flags["endpoint_type"] = "session"
    if (flags["endpoint_type"] or settings.value("endpoint_type")) == "session":
        if password_stdin and not settings.value("username"):
            raise UsageError("--password-stdin needs --username (stdin holds the password)")
        flags["username"] = settings.value("username") or _ask("User name")
        if password_stdin:
            password = _read_secret_from_stdin("password")
        else:
            password = os.environ.get("SSHKIT_PASSWORD") or _ask("Password", hide=True)
    else:
        password = None
        flags["access_key"] = settings.value("access_key") or _ask("Access key")
        if password_stdin:
            flags["secret_key"] = _read_secret_from_stdin("secret key")
        elif not settings.value("secret_key"):
            flags["secret_key"] = _ask("Secret key", hide=True)
    settings = resolve_settings(profile, flags=flags, tls_from_login=False)
    if not settings.verify_tls:
        typer.echo("sshkit: warning: TLS certificates are not verified (--insecure)", err=True)
    done = _login_interactively(
        settings,
        flags["username"],
        password,
        otp=otp,
        force=force,
        can_prompt=not password_stdin and sys.stdin.isatty(),
    )
    who = done.username or done.access_key or "?"
    server = f"manager {done.manager_version}, " if done.manager_version else ""
    typer.echo(
        printable(
            f"Logged in to {done.endpoint} as {who} ({done.endpoint_type} mode, "
            f"{server}API {done.api_version}); profile {done.profile!r}."
        )
    )
    after = resolve_settings(profile)
    if after.value("endpoint") != done.endpoint:
        typer.echo(
            f"sshkit: warning: {after.values['endpoint'].source} sets the endpoint to "
            f"{after.value('endpoint')}, which overrides this login",
            err=True,
        )


def _login_interactively(
    settings: Settings,
    username: str | None,
    password: str | None,
    *,
    otp: str | None,
    force: bool,
    can_prompt: bool,
) -> LoginOutcome:
    """`account.login`, asking for a one-time code or for leave to end the oldest login
    when the server wants one and a terminal is there to ask; otherwise the error says
    which option to pass. Raises what `account.login` raises."""
    from sshkit.services import account

    while True:
        try:
            return account.login(
                settings, username=username, password=password, otp=otp, force=force
            )
        except OtpRequiredError:
            if otp is not None or not can_prompt:
                raise
            otp = ask("One-time code").strip()
        except LoginLimitError:
            if force or not can_prompt:
                raise
            confirm(
                "The account has reached its limit of concurrent logins. "
                "Log in anyway and end the oldest login?",
                default=False,
                declined="not logged in: the account's other logins are left as they are",
            )
            force = True


@app.command("logout")
def logout(profile: Annotated[str | None, _PROFILE] = None) -> None:
    """End the session-mode login on the server and forget the stored login."""
    from sshkit.services import account
    from sshkit.settings import resolve_settings

    done = account.logout(resolve_settings(profile))
    if done.warning:
        typer.echo(f"sshkit: warning: {printable(done.warning)}", err=True)
    if done.forgotten:
        typer.echo(f"Logged out of {done.endpoint} (profile {done.profile!r}).")
    else:
        typer.echo(f"Not logged in (profile {done.profile!r}); nothing to do.")


@app.command("whoami")
def whoami(
    profile: Annotated[str | None, _PROFILE] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the stored credentials with the server and show whose they are."""
    from sshkit.api.client import BackendClient
    from sshkit.services import account
    from sshkit.settings import resolve_settings

    settings = resolve_settings(profile)
    with BackendClient.from_connection(settings.connection()) as client:
        me = account.whoami(
            client,
            username=settings.value("username"),
            access_key=settings.value("access_key"),
        )
    if as_json:
        import dataclasses
        import json

        typer.echo(json.dumps(dataclasses.asdict(me), indent=2))
        return
    server = f"{me.manager_version} " if me.manager_version else ""
    rows = [
        ("profile", me.profile),
        ("endpoint", f"{me.endpoint} ({me.endpoint_type} mode)"),
        ("user", me.username),
        ("access key", me.access_key),
        ("role", me.global_role),
        ("server", f"{server}(API {me.api_version})"),
    ]
    for label, value in rows:
        if value:
            typer.echo(f"{label + ':':<12} {printable(value)}")
