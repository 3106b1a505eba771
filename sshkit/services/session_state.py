"""What state a session is in, waiting for one that is starting, and why a tunnel is silent.

Real servers make a session that is not ready look like many other things (spec §14):
a starting session has no apps and its tunnel is refused (500 in API mode, 502 in
session mode); in session mode the webserver swallows the manager's close codes, so a
refused sshd or a terminated session looks like an open tunnel that never speaks; and
26.1.0-26.3.3 answer `GET /session/{name}` with 500 for every *running* session. The
functions here ask the API and turn what they learn into one clear outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sshkit.errors import (
    ApiError,
    NotFoundError,
    NotRunningError,
    RelayError,
    ServerError,
    SshkitError,
)

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient
    from sshkit.api.models import SessionInfo

# Statuses of a session whose container is not there yet (the manager's SessionStatus).
STARTING = frozenset({"PENDING", "SCHEDULED", "PREPARING", "PULLING", "PREPARED", "CREATING"})
RUNNING = frozenset({"RUNNING", "RUNNING_DEGRADED"})
POLL_INTERVAL = 1.0
DEFAULT_WAIT = 120.0


@dataclass(frozen=True)
class SessionState:
    """What the API says about a session.

    `status` is None when the server would not say (the 26.1-26.3.3 info bug with no
    apps to infer from). `info_failed` records that `GET /session/{name}` answered 500.
    """

    status: str | None
    info: SessionInfo | None = None
    info_failed: bool = False

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    @property
    def starting(self) -> bool:
        return self.status in STARTING


def session_state(client: BackendClient, name: str) -> SessionState:
    """Ask the server for the session's status.

    On 26.1.0-26.3.3, `GET /session/{name}` answers 500 for running sessions only (it
    fails on the container id, which only a running session has): the apps list then
    tells a running session (apps listed) from one the server cannot describe.
    Raises NotFoundError (no such session, or several with that name), AuthError,
    NetworkError, and ServerError for other failures.
    """
    try:
        info = client.get_session(name)
    except ServerError as exc:
        if exc.status != 500:
            raise
        apps = client.session_apps(name)
        return SessionState("RUNNING" if apps else None, None, info_failed=True)
    return SessionState(info.status, info)


def not_running_error(name: str, status: str) -> NotRunningError:
    """The one-line error for a session that is not (or no longer) running."""
    if status in STARTING:
        return NotRunningError(
            f"session {name!r} is {status}: not running yet",
            hint="wait for it to start (pass --wait SECONDS to wait longer)",
        )
    return NotRunningError(f"session {name!r} has ended (status {status})")


def wait_until_running(
    client: BackendClient,
    name: str,
    wait: float,
    *,
    notify: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SessionState:
    """Return once session `name` is running, waiting up to `wait` s while it starts.

    `notify` is called once, with one line, when there is something to wait for.
    Raises NotRunningError when the session ends or errors instead, or is still
    starting after `wait` s; the errors of `session_state` otherwise.
    """
    deadline = clock() + max(wait, 0.0)
    state = session_state(client, name)
    told = False
    while True:
        if state.running or state.status is None:
            return state
        if not state.starting:
            raise not_running_error(name, state.status)
        left = deadline - clock()
        if left <= 0:
            error = not_running_error(name, state.status)
            if told:
                error.message = (
                    f"session {name!r} is still {state.status} after {wait:.0f} s: not running yet"
                )
            raise error
        if not told:
            notify(f"session {name!r} is {state.status}; waiting up to {wait:.0f} s to start")
            told = True
        sleep(min(POLL_INTERVAL, left))
        state = session_state(client, name)


def wait_for_refused_tunnel(
    client: BackendClient,
    name: str,
    app: str,
    wait: float,
    *,
    notify: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """After the server refused a tunnel to `app` (500, or 502 in session mode): name a
    missing app, or wait up to `wait` s while the session starts.

    Returns whether it waited (saying so once through `notify`), so that the tunnel is
    worth asking for again; False when there was nothing to wait for. Raises
    NotFoundError (no such app: the webserver's 502 hides the manager's "No such app
    service."), NotRunningError, and the API errors.
    """
    apps = sorted({a.name for a in client.session_apps(name)})
    if apps and app not in apps:
        raise NotFoundError(
            f"session {name!r} has no {app!r} service (it has: {', '.join(apps)})",
            hint="pick one of those with --app",
        )
    if apps:
        return False  # running (apps are listed): the refusal is not about starting
    told: list[str] = []

    def tell(line: str) -> None:
        told.append(line)
        notify(line)

    wait_until_running(client, name, wait, notify=tell, sleep=sleep, clock=clock)
    return bool(told)


def explain_silent_tunnel(
    client: BackendClient, name: str, app: str, waited: float
) -> ApiError | RelayError:
    """Why a tunnel opened but the app sent nothing for `waited` s; one error to raise.

    Asks the session's status and apps. Never raises for what it cannot find out:
    the fallback answer is "the app is not answering".
    """
    silent = RelayError(
        f"the {app} of session {name!r} is not answering (nothing received within "
        f"{waited:.0f} s of opening the tunnel)",
        hint="the service may have stopped; restart it in the session, or restart the session",
    )
    try:
        state = session_state(client, name)
    except NotFoundError:
        return RelayError(f"session {name!r} no longer exists (it was terminated)")
    except SshkitError:
        # A diagnosis must never replace the error it explains with one of its own.
        return silent
    if state.status is not None and not state.running:
        return not_running_error(name, state.status)
    try:
        apps = {a.name for a in client.session_apps(name)}
    except NotFoundError:
        return RelayError(f"session {name!r} no longer exists (it was terminated)")
    except SshkitError:
        return silent
    if app not in apps:
        if not apps:
            return NotRunningError(f"session {name!r} lists no services: it is not running")
        return NotFoundError(f"session {name!r} has no {app} service")
    return silent
