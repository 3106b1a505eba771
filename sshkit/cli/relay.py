"""`sshkit relay` (ssh's ProxyCommand) and `sshkit forward` (a local port)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sshkit.cli import _relay_cmd
from sshkit.cli._app import app
from sshkit.cli._complete import complete_session


def _option(dest: str) -> Any:
    """The typer option for `dest`, from the fast path's table (defined once there)."""
    option = _relay_cmd.relay_option(dest)
    return typer.Option(option.flag, help=option.help)


_PROFILE = _option("profile")
_APP = _option("app")
_LOG = _option("log_file")
_TIMEOUT = _option("timeout")
_FORWARD_TIMEOUT = typer.Option("--timeout", help="Seconds to wait for the tunnel to open.")


@app.command("relay")
def relay_command(
    host: Annotated[str, typer.Argument(help="Session name, or SESSION<SUFFIX> with --suffix.")],
    app_name: Annotated[str, _APP] = _relay_cmd.DEFAULT_APP,
    suffix: Annotated[str | None, _option("suffix")] = None,
    profile: Annotated[str | None, _PROFILE] = None,
    log_file: Annotated[str | None, _LOG] = None,
    timeout: Annotated[float, _TIMEOUT] = _relay_cmd.DEFAULT_TIMEOUT,
    wait: Annotated[float | None, _option("wait")] = None,
) -> None:
    """Carry an SSH connection over the session's tunnel (use as ssh's ProxyCommand).

    stdin and stdout carry the SSH stream; messages go to stderr. Once the tunnel is
    open, sshd must answer within --timeout seconds; otherwise the relay asks the
    server why and exits with that cause.

    Example: ssh -o ProxyCommand='sshkit relay -- %h' work@my-session
    """
    _relay_cmd.relay(
        host,
        app=app_name,
        suffix=suffix,
        profile=profile,
        log_file=log_file,
        timeout=timeout,
        wait=wait,
    )


@app.command("forward")
def forward_command(
    session: Annotated[str, typer.Argument(help="Session name.", autocompletion=complete_session)],
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            "-b",
            help="Local [HOST:]PORT to listen on (default 127.0.0.1:9922; "
            "a busy port falls back to a free one).",
        ),
    ] = None,
    app_name: Annotated[str, _APP] = _relay_cmd.DEFAULT_APP,
    profile: Annotated[str | None, _PROFILE] = None,
    log_file: Annotated[str | None, _LOG] = None,
    timeout: Annotated[float, _FORWARD_TIMEOUT] = _relay_cmd.DEFAULT_TIMEOUT,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for a session that is still starting."),
    ] = _relay_cmd.DEFAULT_WAIT,
) -> None:
    """Forward a local port to the session's sshd, for clients without ProxyCommand.

    Runs until Ctrl-C. Each connection gets its own tunnel.

    Example: sshkit forward my-session -b 9922, then: ssh -p 9922 work@127.0.0.1
    """
    _relay_cmd.forward(
        session,
        bind=bind,
        app=app_name,
        profile=profile,
        log_file=log_file,
        timeout=timeout,
        wait=wait,
    )
