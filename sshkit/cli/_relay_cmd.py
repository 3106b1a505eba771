"""The bodies of `sshkit relay` and `sshkit forward`, importable without typer.

`sshkit relay` runs on every ssh connection, so `sshkit.cli.main` sends
`sshkit relay ...` here directly (`fast_main`), skipping typer and the other
command modules. The typer commands in `sshkit.cli.relay` call the same functions,
so both paths behave alike; `--help` always goes through typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sshkit.errors import ServerError, SshkitError, UsageError

if TYPE_CHECKING:
    from sshkit.relay.log import RelayLog
    from sshkit.relay.pump import Channel
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import Connection

DEFAULT_APP = "sshd"
# Below VS Code's 15 s connect timeout, so that our message is the one shown.
DEFAULT_TIMEOUT = 10.0
LOG_ENV = "SSHKIT_LOG"


def _connector(
    conn: Connection,
    target: TunnelTarget,
    timeout: float,
    log: RelayLog | None,
) -> Channel:
    from sshkit.api.tunnel import tunnel_request
    from sshkit.relay.ws import open_channel

    # A fresh request per tunnel: API-mode signatures carry the current Date.
    url, headers = tunnel_request(conn, target.session, target.app)
    try:
        return open_channel(
            url,
            headers,
            target,
            timeout=timeout,
            verify_tls=conn.verify_tls,
            ca_bundle=conn.ca_bundle,
            log=log,
        )
    except ServerError as exc:
        if exc.status == 502 and target.session_mode:
            _explain_bad_gateway(conn, target, headers, timeout)
        raise


def _explain_bad_gateway(
    conn: Connection, target: TunnelTarget, headers: dict[str, str], timeout: float
) -> None:
    """Find out why the webserver answered 502 (it hides the manager's 404/401).

    Asks `GET /func/session/{name}` once, on this error path only, and raises the
    clearer error when there is one. Session-mode headers carry no signature, so
    the tunnel's headers serve this request too.
    """
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from sshkit.relay.ws import handshake_error, ssl_context

    url = f"{conn.endpoint.rstrip('/')}/func/session/{quote(target.session, safe='')}"
    if not url.startswith(("http://", "https://")):
        return
    request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310
    context = ssl_context(conn.verify_tls, conn.ca_bundle) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context):  # noqa: S310
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            raise handshake_error(exc.code, exc.read(65536), target) from None
    except OSError:
        return


def relay(
    host: str,
    *,
    app: str = DEFAULT_APP,
    suffix: str | None = None,
    profile: str | None = None,
    log_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Carry stdin/stdout over the tunnel to HOST's sshd until either side closes.

    Raises NotLoggedInError/ConfigError (no usable login), AuthError, NotFoundError,
    ServerError (the server refused the tunnel), NetworkError or RelayError.
    """
    from sshkit.relay.log import open_log
    from sshkit.relay.proxy import run_stdio_relay, strip_suffix
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import load_connection

    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    log = open_log(log_file or os.environ.get(LOG_ENV))
    try:
        session = strip_suffix(host, suffix)
        if log:
            log.write(f"relay start: session {session!r}, app {app!r}, pid {os.getpid()}")
        conn = load_connection(profile)
        target = TunnelTarget(session, app, conn.endpoint_type == "session")
        channel = _connector(conn, target, timeout, log)
        run_stdio_relay(channel, target, log=log)
    except SshkitError as exc:
        if log:
            log.write(f"error: {exc.message}")
        raise
    finally:
        if log:
            log.close()


def forward(
    session: str,
    *,
    bind: str | None = None,
    app: str = DEFAULT_APP,
    profile: str | None = None,
    log_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Listen on a local port and tunnel each connection to SESSION's sshd until Ctrl-C.

    Prints the address on stdout. Raises UsageError (bad bind address),
    LocalFileError (cannot listen), NotLoggedInError/ConfigError.
    """
    import signal

    from sshkit.cli._errors import report
    from sshkit.relay.forward import Forwarder, parse_bind
    from sshkit.relay.log import open_log
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import load_connection

    host, port = parse_bind(bind)
    conn = load_connection(profile)
    target = TunnelTarget(session, app, conn.endpoint_type == "session")
    log = open_log(log_file or os.environ.get(LOG_ENV))
    forwarder = Forwarder(
        connect=lambda: _connector(conn, target, timeout, log),
        target=target,
        host=host,
        port=port,
        log=log,
        report=report,
    )
    bound_host, bound_port = forwarder.bind()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: forwarder.stop())
    try:
        if forwarder.fell_back:
            sys.stderr.write(
                f"sshkit: warning: port {port} is in use; listening on port {bound_port} instead\n"
            )
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        sys.stdout.write(
            f"Forwarding {shown}:{bound_port} to {app} of session {session!r}."
            " Press Ctrl-C to stop.\n"
            f"Connect with: ssh -p {bound_port} USER@{bound_host}\n"
        )
        sys.stdout.flush()
        forwarder.serve()
    except KeyboardInterrupt:
        pass
    finally:
        forwarder.close()
        signal.signal(signal.SIGTERM, previous)
        if log:
            log.close()


class RelayOption(NamedTuple):
    """One option of `sshkit relay`, for both its fast path and its typer command."""

    flag: str
    dest: str
    kind: type[str] | type[float]
    default: str | float | None
    help: str


# The options of `sshkit relay`, defined once: `parse_relay_args` (the fast path)
# reads them, and `sshkit.cli.relay` builds its typer options from them
# (tests/test_relay_cli.py checks that both agree).
RELAY_OPTIONS = (
    RelayOption("--app", "app", str, DEFAULT_APP, "The session's service to reach."),
    RelayOption("--suffix", "suffix", str, None, "Strip this suffix from HOST."),
    RelayOption("--profile", "profile", str, None, "Login profile to use."),
    RelayOption(
        "--log-file",
        "log_file",
        str,
        None,
        "Append a diagnostic log here (no secrets). Also: SSHKIT_LOG.",
    ),
    RelayOption(
        "--timeout", "timeout", float, DEFAULT_TIMEOUT, "Seconds to wait for the tunnel to open."
    ),
)


def relay_option(dest: str) -> RelayOption:
    """The option of RELAY_OPTIONS stored as `dest`. Raises KeyError for an unknown one."""
    for option in RELAY_OPTIONS:
        if option.dest == dest:
            return option
    raise KeyError(dest)


def _usage(message: str) -> UsageError:
    return UsageError(message, hint="see `sshkit relay --help`")


def parse_relay_args(argv: Sequence[str]) -> dict[str, Any]:
    """Parse `sshkit relay` arguments: HOST and RELAY_OPTIONS (`--opt V` or `--opt=V`).

    A few lines instead of argparse, whose import and formatter cost the relay
    about 5 ms on every ssh connection. Returns {"host": ..., dest: value, ...}.
    Raises UsageError on an unknown option, a missing or bad value, or not
    exactly one HOST.
    """
    by_flag = {option.flag: option for option in RELAY_OPTIONS}
    values: dict[str, Any] = {option.dest: option.default for option in RELAY_OPTIONS}
    hosts: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            hosts.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            hosts.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        option = by_flag.get(flag)
        if option is None:
            raise _usage(f"unrecognized arguments: {arg}")
        if not eq:
            if i >= len(args):
                raise _usage(f"argument {flag}: expected one argument")
            value = args[i]
            i += 1
        try:
            values[option.dest] = option.kind(value)
        except ValueError:
            raise _usage(
                f"argument {flag}: invalid {option.kind.__name__} value: {value!r}"
            ) from None
    if not hosts:
        raise _usage("the following arguments are required: host")
    if len(hosts) > 1:
        raise _usage(f"unrecognized arguments: {' '.join(hosts[1:])}")
    values["host"] = hosts[0]
    return values


def fast_main(argv: Sequence[str]) -> bool:
    """Run `sshkit relay ARGV` without typer; exits the process.

    Returns False (without doing anything) when typer should handle the command
    line instead, for `--help`.
    """
    if any(arg in ("-h", "--help") for arg in argv):
        return False
    from sshkit.cli._errors import report

    try:
        args = parse_relay_args(argv)
        relay(
            args["host"],
            app=args["app"],
            suffix=args["suffix"],
            profile=args["profile"],
            log_file=args["log_file"],
            timeout=args["timeout"],
        )
    except SshkitError as exc:
        code = report(exc)
        sys.stderr.flush()
        os._exit(code)
    except KeyboardInterrupt:
        sys.stderr.write("sshkit: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    # os._exit: the reader thread may be blocked on stdin; nothing else to clean up
    # (stdout is closed, the websocket too).
    sys.stderr.flush()
    os._exit(0)
