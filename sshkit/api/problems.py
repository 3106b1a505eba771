"""One mapping from a server's error answer to sshkit's errors (protocol spec §10, §14).

An answer is its HTTP status, its body (problem+json: `type`, `title`, `msg`,
`error_code` from 25.8, `agent-details` from agents, `data`) and a few headers
(`Location`, `Retry-After`). The API client (`BackendClient.error_for`), the relay's
websocket handshake (`sshkit.relay.ws`) and the relay's look-up behind a webserver
502 (`sshkit.api.tunnel.explain_bad_gateway`) all call `classify`, so the same
answer gives the same error class, message and hint wherever it comes from: one
clock-skew rule, one 401 hint per endpoint type, one text for an ambiguous name.
The close codes a server ends a tunnel websocket with are mapped here too
(`close_code_error`, for `sshkit.relay.ws.close_error`).

Stdlib only and light (the relay reaches it on its error path, on every ssh
connection). Server text is kept verbatim here; `sshkit.cli._errors.report`
escapes control characters when it prints a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sshkit.errors import (
    ApiError,
    AuthError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RelayError,
    ServerError,
)

# A problem+json body larger than this is not parsed (callers bound what they read).
MAX_PROBLEM_BODY = 1 << 20

CLOCK_HINT = (
    "the server and this computer disagree on the time by more than 15 minutes;"
    " sync your clock (enable NTP / automatic time)"
)
ID_HINT = "name the session by its id (`backend.ai session list` shows the ids)"
SESSION_LIST_HINT = "list your sessions with `backend.ai session list`"
REDIRECT_HINT = "use the final URL as the endpoint"
SESSION_LOGIN_HINT = "log in again with `sshkit login`"
API_KEYS_HINT = "check the access key and secret key (`sshkit login --endpoint-type api`)"
RENEW_HINT = "change it in the Backend.AI web UI, then `sshkit login` again"


@dataclass(frozen=True)
class Problem:
    """The fields sshkit reads from a problem+json body; all None for any other body."""

    title: str | None = None
    msg: str | None = None
    type: str | None = None
    error_code: str | None = None
    data: Mapping[str, Any] | None = None

    @property
    def slug(self) -> str:
        """The last part of `type` ("too-many-sessions-matched"), or ""."""
        return (self.type or "").rsplit("/", 1)[-1]


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_problem(body: bytes | bytearray | Mapping[str, Any] | None) -> Problem:
    """Read a problem+json body (bytes, or JSON already decoded). Never raises.

    `msg` falls back to an agent's `agent-details.exception`, then to `details`
    (the webserver's spelling).
    """
    data: object = body
    if isinstance(body, bytes | bytearray):
        if len(body) > MAX_PROBLEM_BODY:
            return Problem()
        try:
            data = json.loads(bytes(body).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return Problem()
    if not isinstance(data, Mapping):
        return Problem()
    msg = _str(data.get("msg"))
    agent = data.get("agent-details")
    if msg is None and isinstance(agent, Mapping):
        msg = _str(agent.get("exception"))
    if msg is None:
        msg = _str(data.get("details"))
    extra = data.get("data")
    return Problem(
        title=_str(data.get("title")),
        msg=msg,
        type=_str(data.get("type")),
        error_code=_str(data.get("error_code")),
        data=extra if isinstance(extra, Mapping) else None,
    )


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def http_text(status: int, problem: Problem) -> str:
    """`HTTP 404 No such session. (msg) [error_code]`: what the server said, in one line."""
    detail = problem.title or _phrase(status)
    if problem.msg and problem.msg != problem.title:
        detail = f"{detail} ({problem.msg})"
    if problem.error_code:
        detail = f"{detail} [{problem.error_code}]"
    return f"HTTP {status} {detail}"


# The manager's rolling rate-limit window, fixed in every release (spec §14). Its 429
# is raised before the X-RateLimit-* headers are set, so a real 429 never names it.
MANAGER_RATE_WINDOW = 900


def rate_limit_wait(headers: Mapping[str, str]) -> str:
    """How long the server asks us to wait: Retry-After (a proxy's), else the rate window
    (X-RateLimit-Window, else the manager's fixed 900 s; spec §14)."""
    for header in ("retry-after", "x-ratelimit-window"):
        value = headers.get(header, "").strip()
        if value.isdigit() and 0 < int(value) <= 86400:
            return _wait_text(int(value), upper_bound=header != "retry-after")
    return _wait_text(MANAGER_RATE_WINDOW, upper_bound=True)


def _wait_text(seconds: int, *, upper_bound: bool) -> str:
    prefix = "up to " if upper_bound else ""
    if seconds >= 120:
        return f"{prefix}{seconds // 60} minutes ({seconds} s)"
    return f"{prefix}{seconds} s"


def _is_session_id(text: str) -> bool:
    return 0 < len(text) <= 64 and all(c.isascii() and (c.isalnum() or c == "-") for c in text)


def matches_text(problem: Problem, session: str | None = None) -> str:
    """'2 sessions are named 'x' (ids ...)', from a too-many-sessions-matched body."""
    raw = problem.data.get("matches") if problem.data is not None else None
    ids: list[str] = []
    for match in raw if isinstance(raw, list) else []:
        if isinstance(match, Mapping):
            sid = match.get("id") or match.get("session_id")
            if isinstance(sid, str) and _is_session_id(sid):
                ids.append(sid)
    named = f"are named {session!r}" if session else "have that name"
    if not ids:
        return f"several sessions {named}"
    shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    return f"{len(ids)} sessions {named} (ids {shown})"


def is_clock_skew(status: int, problem: Problem) -> bool:
    """Whether the server refused the request's Date (spec §3: "Date/time sync error")."""
    return status == 400 and "Date/time sync" in (problem.msg or "")


def classify(
    status: int,
    body: bytes | bytearray | Mapping[str, Any] | Problem | None,
    *,
    what: str,
    endpoint_type: str,
    session: str | None = None,
    app: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """The sshkit error for an HTTP error answer (any status >= 300).

    `what` names the operation ("looking up session 'x'"): the message is
    "{what} failed: {reason}". `endpoint_type` ("api" or "session") picks the 401
    text and hint. `session` (and `app`) name what the request was about, so that a
    404 says which of the two is missing. `headers` are the answer's (any case):
    `Location` of a refused redirect, `Retry-After` of a 429. Never raises.
    """
    problem = body if isinstance(body, Problem) else parse_problem(body)
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    text = http_text(status, problem)
    slug = problem.slug
    title = (problem.title or "").lower()
    kwargs: dict[str, Any] = dict(
        status=status,
        title=problem.title,
        msg=problem.msg,
        error_type=problem.type,
        error_code=problem.error_code,
    )

    def failed(reason: str) -> str:
        return f"{what} failed: {reason}"

    if 300 <= status < 400:
        # Not followed: the credentials would go wherever the redirect points.
        target = lower.get("location", "elsewhere")
        return ServerError(
            failed(f"the server redirects to {target} (HTTP {status})"),
            hint=REDIRECT_HINT,
            **kwargs,
        )
    if status == 429:
        return RateLimitError(
            failed("the server's rate limit for this key is exceeded (HTTP 429)"),
            hint=f"wait {rate_limit_wait(lower)} before trying again",
            **kwargs,
        )
    if status == 404 and (slug == "too-many-sessions-matched" or "too many sessions" in title):
        return NotFoundError(failed(matches_text(problem, session)), hint=ID_HINT, **kwargs)
    if is_clock_skew(status, problem):
        return AuthError(failed(f"this computer's clock is off: {text}"), hint=CLOCK_HINT, **kwargs)
    if status == 400 and slug == "invalid-auth-params":
        return AuthError(failed(text), **kwargs)
    if status == 401:
        if slug == "password-expired":
            return AuthError(
                failed(f"the account's password has expired: {text}"),
                hint=RENEW_HINT,
                **kwargs,
            )
        if endpoint_type == "session":
            return AuthError(
                failed(f"the login has expired or was revoked: {text}"),
                hint=SESSION_LOGIN_HINT,
                **kwargs,
            )
        return AuthError(
            failed(f"the server refused the access key or secret key: {text}"),
            hint=API_KEYS_HINT,
            **kwargs,
        )
    if status == 403:
        to = f"access to session {session!r}" if session else "this"
        return RejectedError(failed(f"the server does not allow {to}: {text}"), **kwargs)
    if status == 404 and session and slug != "url-not-found":
        if app and "app" in title:
            return NotFoundError(failed(f"session {session!r} has no {app!r} service"), **kwargs)
        return NotFoundError(
            failed(f"session {session!r} not found"), hint=SESSION_LIST_HINT, **kwargs
        )
    if status == 404:
        return NotFoundError(failed(text), **kwargs)
    if status == 502 and endpoint_type == "session" and session:
        # The webserver hides the manager's answer behind a 502 (spec §2.3).
        return ServerError(
            failed(f"{text}; session {session!r} may not exist or may not be running"),
            **kwargs,
        )
    if status >= 500:
        return ServerError(failed(text), **kwargs)
    return RejectedError(failed(text), **kwargs)


def tunnel_what(app: str) -> str:
    """The operation named in the errors of opening a tunnel to `app`."""
    return f"opening the tunnel to {app}"


def close_code_error(
    code: int, reason: str, *, session: str, app: str, mid_stream: bool = False
) -> RelayError:
    """The error for a tunnel websocket the server closed with `code` (spec §6.3).

    1013: the app refused the connection (often: still starting); 1011: the server
    could not connect to it. `mid_stream`: bytes from the app had already arrived,
    so the server had connected, and the same codes mean the tunnel broke. Raises
    nothing.
    """
    if mid_stream and code in (1011, 1013):
        what = "an internal error" if code == 1011 else "try again later"
        return RelayError(
            f"the tunnel to the {app} of session {session!r} broke: "
            f"the server closed it with {what} (close code {code})",
            hint="connect again; if it keeps happening, the server's log says why",
        )
    if code == 1013:
        return RelayError(
            f"the {app} of session {session!r} refused the connection (close code 1013)",
            hint="the session may still be starting; try again in a moment",
        )
    if code == 1011:
        return RelayError(
            f"the server could not connect to the {app} of session {session!r} (close code 1011)"
        )
    said = f": {reason}" if reason else ""
    return RelayError(f"the server closed the tunnel with code {code}{said}")
