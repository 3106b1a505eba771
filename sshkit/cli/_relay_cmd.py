"""The bodies of `sshkit relay` and `sshkit forward`, importable without typer.

`sshkit relay` runs on every ssh connection, so `sshkit.cli.main` sends
`sshkit relay ...` here directly (`fast_main`), skipping typer and the other
command modules. The typer commands in `sshkit.cli.relay` call the same functions,
so both paths behave alike; `--help` always goes through typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from sshkit.errors import RelayError, ServerError, SshkitError, UsageError

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from sshkit.relay.log import RelayLog
    from sshkit.relay.pump import Channel
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import Connection

DEFAULT_APP = "sshd"
# Below VS Code's 15 s connect timeout, so that our message is the one shown.
DEFAULT_TIMEOUT = 10.0
# How long `forward` waits for a session that is still starting (the relay: its timeout).
DEFAULT_WAIT = 120.0
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
            from sshkit.api.tunnel import explain_bad_gateway

            clearer = explain_bad_gateway(conn, target.session, target.app, headers, timeout)
            if clearer is not None:
                raise clearer from None
        raise


def _open_when_ready(
    conn: Connection,
    target: TunnelTarget,
    timeout: float,
    wait: float,
    log: RelayLog | None,
) -> Channel:
    """Open the tunnel; if the server refuses it because the session is still starting
    (500 in API mode, 502 in session mode), wait up to `wait` s for it and try again.

    Raises NotFoundError (no such app), NotRunningError when the session ends or is
    still starting after `wait` s, and the errors of `_connector`.
    """
    try:
        return _connector(conn, target, timeout, log)
    except ServerError as exc:
        if exc.status not in (500, 502):
            raise
        if not _waited_for_start(conn, target, wait, log):
            raise
    return _connector(conn, target, timeout, log)


def _waited_for_start(
    conn: Connection, target: TunnelTarget, wait: float, log: RelayLog | None
) -> bool:
    """After a refused tunnel: name a missing app, or wait while the session starts.

    Says so once on stderr (and in the log) when it waits; returns False when there
    was nothing to wait for. Raises what `wait_for_refused_tunnel` raises.
    """
    from sshkit.api.client import BackendClient
    from sshkit.services.session_state import wait_for_refused_tunnel

    def notify(line: str) -> None:
        if log:
            log.write(line)
        sys.stderr.write(f"sshkit: {line}\n")
        sys.stderr.flush()

    with BackendClient.from_connection(conn) as client:
        return wait_for_refused_tunnel(client, target.session, target.app, wait, notify=notify)


def _run_watched(
    conn: Connection,
    target: TunnelTarget,
    channel: Channel,
    timeout: float,
    log: RelayLog | None,
    run: Callable[..., object],
) -> None:
    """Run the relay with a first-byte watchdog on sshd tunnels (sshd speaks first).

    A tunnel that stays silent for `timeout` s is ended and explained from the API
    (not running yet, ended, no sshd, sshd not answering). Raises that explanation,
    or what `run` raises.
    """
    from sshkit.relay.watchdog import FirstByteWatch

    if target.app != DEFAULT_APP:
        run(channel, target, log=log)
        return
    watch = FirstByteWatch(channel, timeout).start()
    try:
        run(watch, target, log=log)
    except RelayError:
        if not watch.silent:
            raise
        if log:
            log.write(f"nothing from {target.app} within {timeout:.0f} s: asking the API why")
        raise _explain_silence(conn, target, timeout) from None


def _explain_silence(conn: Connection, target: TunnelTarget, timeout: float) -> SshkitError:
    from sshkit.api.client import BackendClient
    from sshkit.services.session_state import explain_silent_tunnel

    with BackendClient.from_connection(conn) as client:
        return explain_silent_tunnel(client, target.session, target.app, timeout)


def relay(
    host: str,
    *,
    app: str = DEFAULT_APP,
    suffix: str | None = None,
    profile: str | None = None,
    log_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    wait: float | None = None,
) -> None:
    """Carry stdin/stdout over the tunnel to HOST's sshd until either side closes.

    A session that is still starting is waited for, up to `wait` s (default:
    `timeout`). Once the tunnel is open, sshd must speak within `timeout` s, or the
    relay asks the API why and fails with that cause.
    Raises NotLoggedInError/ConfigError (no usable login), AuthError, NotFoundError
    (NotRunningError: starting or ended), ServerError (the server refused the
    tunnel), NetworkError or RelayError.
    """
    from sshkit.formats.names import check_session_name
    from sshkit.relay.log import open_log
    from sshkit.relay.proxy import run_stdio_relay, strip_suffix
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import load_connection

    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if wait is not None and wait < 0:
        raise UsageError("--wait must be 0 or more seconds")
    log = open_log(log_file or os.environ.get(LOG_ENV))
    try:
        session = check_session_name(strip_suffix(host, suffix))
        if log:
            log.write(f"relay start: session {session!r}, app {app!r}, pid {os.getpid()}")
        conn = load_connection(profile)
        target = TunnelTarget(session, app, conn.endpoint_type == "session")
        channel = _open_when_ready(conn, target, timeout, timeout if wait is None else wait, log)
        _run_watched(conn, target, channel, timeout, log, run_stdio_relay)
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
    wait: float = DEFAULT_WAIT,
) -> None:
    """Listen on a local port and tunnel each connection to SESSION's sshd until Ctrl-C.

    Each connection waits up to `wait` s for a session that is still starting.
    Prints the address on stdout. Raises UsageError (bad bind address),
    LocalFileError (cannot listen), NotLoggedInError/ConfigError.
    """
    import signal

    from sshkit.cli._errors import report
    from sshkit.formats.names import check_session_name
    from sshkit.relay.forward import Forwarder, parse_bind
    from sshkit.relay.log import open_log
    from sshkit.relay.ws import TunnelTarget
    from sshkit.settings import load_connection

    check_session_name(session)
    if wait < 0:
        raise UsageError("--wait must be 0 or more seconds")
    host, port = parse_bind(bind)
    conn = load_connection(profile)
    target = TunnelTarget(session, app, conn.endpoint_type == "session")
    log = open_log(log_file or os.environ.get(LOG_ENV))
    forwarder = Forwarder(
        connect=lambda: _open_when_ready(conn, target, timeout, wait, log),
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


class RelayOption:
    """One option of `sshkit relay`, for both its fast path and its typer command.

    A plain class rather than a `typing.NamedTuple`: the relay does not import `typing`.
    """

    __slots__ = ("default", "dest", "flag", "help", "kind")

    def __init__(
        self,
        flag: str,
        dest: str,
        kind: type[str] | type[float],
        default: str | float | None,
        help: str,
    ) -> None:
        self.flag = flag
        self.dest = dest
        self.kind = kind
        self.default = default
        self.help = help

    def __repr__(self) -> str:
        return f"RelayOption({self.flag!r}, {self.dest!r})"


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
        "--timeout",
        "timeout",
        float,
        DEFAULT_TIMEOUT,
        "Seconds to wait for the tunnel to open, and then for sshd to speak.",
    ),
    RelayOption(
        "--wait",
        "wait",
        float,
        None,
        "Seconds to wait for a session that is still starting (default: --timeout).",
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
    options = list(argv)[: list(argv).index("--")] if "--" in argv else argv
    if any(arg in ("-h", "--help") for arg in options):
        return False
    try:
        args = parse_relay_args(argv)
        relay(
            args["host"],
            app=args["app"],
            suffix=args["suffix"],
            profile=args["profile"],
            log_file=args["log_file"],
            timeout=args["timeout"],
            wait=args["wait"],
        )
    except SshkitError as exc:
        from sshkit.cli._errors import report  # only on the way out

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
