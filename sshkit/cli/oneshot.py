"""`sshkit ssh` and `sshkit scp`: one-shot connections that write nothing to ~/.ssh/config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.cli._complete import complete_session
from sshkit.cli._options import HostKey
from sshkit.errors import UsageError

if TYPE_CHECKING:
    from sshkit.services.oneshot import OneShotOptions

_PASS = {"allow_extra_args": True, "ignore_unknown_options": True}
_USER = typer.Option("--user", help="User inside the container.")
_IDENTITY = typer.Option("--identity", help="Private key (default: the downloaded one).")
_HOST_KEY = typer.Option("--host-key", help="pin (managed known_hosts) or off.")
_PROFILE = typer.Option("--profile", help="Login profile.")
_WAIT = typer.Option("--wait", help="Seconds to wait for a session that is still starting.")


def _options(
    user: str,
    identity: Path | None,
    host_key: HostKey,
    profile: str | None,
    wait: float = 120.0,
) -> OneShotOptions:
    from sshkit.services.oneshot import OneShotOptions

    if wait < 0:
        raise UsageError("--wait must be 0 or more seconds")
    return OneShotOptions(
        user=user,
        identity=identity,
        host_key=host_key.value,
        profile=profile,
        wait=wait,
        notify=lambda line: typer.echo(f"sshkit: {line}", err=True),
    )


@app.command("ssh", context_settings=_PASS)
def ssh_command(
    session: Annotated[
        str, typer.Argument(help="The compute session.", autocompletion=complete_session)
    ],
    ssh_args: Annotated[
        list[str] | None, typer.Argument(help="Passed to ssh after the host (use -- first).")
    ] = None,
    user: Annotated[str, _USER] = "work",
    identity: Annotated[Path | None, _IDENTITY] = None,
    host_key: Annotated[HostKey, _HOST_KEY] = HostKey.pin,
    profile: Annotated[str | None, _PROFILE] = None,
    wait: Annotated[float, _WAIT] = 120.0,
) -> None:
    """Open ssh to SESSION through the relay, with a temporary config.

    Example: sshkit ssh my-session -- -L 8888:localhost:8888 nvidia-smi
    """
    from sshkit.cli._client import open_client
    from sshkit.formats.names import check_session_name
    from sshkit.services.oneshot import prepare_config, require_tool, run_ssh

    opts = _options(user, identity, host_key, profile, wait)
    with open_client(profile) as client:
        check_session_name(session)
        ssh = require_tool("ssh")
        config = prepare_config(client, [session], opts)
    # The client is closed before ssh runs: the session may last for hours.
    raise typer.Exit(run_ssh(ssh, config, session, ssh_args or []))


@app.command("scp", context_settings=_PASS)
def scp_command(
    scp_args: Annotated[
        list[str], typer.Argument(help="scp arguments; remote paths are SESSION:path.")
    ],
    user: Annotated[str, _USER] = "work",
    identity: Annotated[Path | None, _IDENTITY] = None,
    host_key: Annotated[HostKey, _HOST_KEY] = HostKey.pin,
    profile: Annotated[str | None, _PROFILE] = None,
    wait: Annotated[float, _WAIT] = 120.0,
) -> None:
    """Copy files to or from sessions through the relay, with a temporary config.

    Example: sshkit scp data.csv my-session:/home/work/
    """
    from sshkit.cli._client import open_client
    from sshkit.services.oneshot import prepare_config, require_tool, run_scp, scp_sessions

    opts = _options(user, identity, host_key, profile, wait)
    with open_client(profile) as client:
        scp = require_tool("scp")
        config = prepare_config(client, scp_sessions(scp_args), opts)
    raise typer.Exit(run_scp(scp, config, scp_args))
