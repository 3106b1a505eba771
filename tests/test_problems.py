"""One mapping of server answers to errors (issue 16): the API client and the relay agree.

Each row is an HTTP error answer (status, body, headers). It goes through the API
client's error path (`BackendClient.error_for`, on a `requests` response) and
through the relay's (a real websocket upgrade answered with it, `open_channel`),
and both must give the same error class, message, hint and server fields.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sshkit.api.client import BackendClient
from sshkit.api.problems import (
    API_KEYS_HINT,
    CLOCK_HINT,
    ID_HINT,
    REDIRECT_HINT,
    RENEW_HINT,
    SESSION_LIST_HINT,
    SESSION_LOGIN_HINT,
    classify,
    tunnel_what,
)
from sshkit.api.tunnel import explain_bad_gateway
from sshkit.errors import (
    ApiError,
    AuthError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    ServerError,
)
from sshkit.relay.ws import TunnelTarget, open_channel
from sshkit.settings import Connection
from tests.api_fakes import Reply, fake_session
from tests.test_relay_ws import one_shot_http

PROBS = "https://api.backend.ai/probs/"
TWIN_IDS = ["0b5f1c9e-1111-4e0e-9a57-000000000001", "0b5f1c9e-2222-4e0e-9a57-000000000002"]


def prob(slug: str, title: str, **extra: Any) -> bytes:
    return json.dumps({"type": PROBS + slug, "title": title, **extra}).encode()


JSON = {"Content-Type": "application/problem+json"}

# id, status, body, headers, endpoint type, class, fragment of the message, hint.
CASES: list[tuple[str, int, bytes, dict[str, str], str, type[ApiError], str, str | None]] = [
    ("clock", 400,
     prob("invalid-auth-params", "Missing or invalid authorization parameters.",
          msg="Date/time sync error"),
     JSON, "api", AuthError, "this computer's clock is off", CLOCK_HINT),
    ("clock-webserver-details", 400,
     json.dumps({"title": "Missing or invalid authorization parameters.",
                 "details": "Date/time sync error"}).encode(),
     JSON, "session", AuthError, "(Date/time sync error)", CLOCK_HINT),
    ("bad-auth-params", 400,
     prob("invalid-auth-params", "Missing or invalid authorization parameters."),
     JSON, "api", AuthError, "HTTP 400 Missing or invalid authorization parameters.", None),
    ("401-api", 401,
     prob("auth-failed", "Credential/signature mismatch.", msg="Signature mismatch"),
     JSON, "api", AuthError,
     "the server refused the access key or secret key: HTTP 401 Credential/signature mismatch."
     " (Signature mismatch)", API_KEYS_HINT),
    ("401-session", 401, prob("auth-failed", "Unauthorized access"),
     JSON, "session", AuthError, "the login has expired or was revoked", SESSION_LOGIN_HINT),
    ("401-password-expired", 401, prob("password-expired", "Password expired."),
     JSON, "session", AuthError, "the account's password has expired", RENEW_HINT),
    ("403", 403, prob("generic-forbidden", "Forbidden operation."),
     JSON, "api", RejectedError, "the server does not allow access to session 's1'", None),
    ("404-session", 404, prob("object-not-found", "No such session.", msg="Session (id=s1)"),
     JSON, "api", NotFoundError, "session 's1' not found", SESSION_LIST_HINT),
    ("404-app", 404, prob("object-not-found", "No such app service."),
     JSON, "session", NotFoundError, "session 's1' has no 'sshd' service", None),
    ("404-url", 404, prob("url-not-found", "Unknown URL path.", data="/x"),
     JSON, "api", NotFoundError, "HTTP 404 Unknown URL path.", None),
    ("ambiguous", 404,
     prob("too-many-sessions-matched", "Too many sessions matched.",
          data={"matches": [{"id": i, "name": "s1", "status": "RUNNING"} for i in TWIN_IDS]}),
     JSON, "api", NotFoundError,
     f"2 sessions are named 's1' (ids {TWIN_IDS[0]}, {TWIN_IDS[1]})", ID_HINT),
    ("429", 429, prob("too-many-requests", "Too many requests."),
     {**JSON, "Retry-After": "900"}, "api", RateLimitError,
     "rate limit for this key is exceeded (HTTP 429)",
     "wait 15 minutes (900 s) before trying again"),
    ("429-window", 429, b"", {"X-RateLimit-Window": "60"}, "api", RateLimitError,
     "(HTTP 429)", "wait up to 60 s before trying again"),
    # The manager's real 429: no rate headers at all, its window is a fixed 900 s.
    ("429-bare", 429, prob("rate-limit-exceeded", "Rate limit exceeded."), JSON, "api",
     RateLimitError, "(HTTP 429)", "wait up to 15 minutes (900 s) before trying again"),
    ("400-error-code", 400,
     prob("invalid-api-params", "Missing or invalid API parameters.", msg="bad app",
          error_code="session_generic_bad-request"),
     JSON, "api", RejectedError,
     "HTTP 400 Missing or invalid API parameters. (bad app) [session_generic_bad-request]", None),
    ("500-agent", 500,
     prob("kernel-execution-failed", "Executing user code in the kernel has failed.",
          **{"agent-details": {"exception": "RuntimeError: boom"}}),
     JSON, "api", ServerError, "(RuntimeError: boom)", None),
    ("502-session", 502, b"<html>bad gateway</html>", {"Content-Type": "text/html"},
     "session", ServerError, "HTTP 502 Bad Gateway; session 's1' may not exist", None),
    ("503-text", 503, b"down for maintenance", {"Content-Type": "text/plain"},
     "api", ServerError, "HTTP 503 Service Unavailable", None),
    ("redirect", 302, b"", {"Location": "https://elsewhere.example/x"}, "session", ServerError,
     "the server redirects to https://elsewhere.example/x (HTTP 302)", REDIRECT_HINT),
]  # fmt: skip


def _conn(endpoint_type: str, endpoint: str = "http://127.0.0.1:9") -> Connection:
    api = endpoint_type == "api"
    return Connection(
        profile="default",
        endpoint=endpoint,
        endpoint_type="api" if api else "session",
        access_key="AKTEST" if api else None,
        secret_key="not-a-real-secret" if api else None,
        session_id=None if api else "SID",
        api_version=None,
        verify_tls=True,
        ca_bundle=None,
    )


def client_error(status: int, body: bytes, headers: dict[str, str], endpoint_type: str) -> ApiError:
    """The API client's path: a `requests` response from its transport, through error_for."""
    http, _ = fake_session(lambda req: Reply(status, body, headers))
    client = BackendClient(_conn(endpoint_type), http=http)
    resp = http.get("http://127.0.0.1:9/stream/session/s1/tcpproxy?app=sshd", allow_redirects=False)
    return client.error_for(resp, tunnel_what("sshd"), session="s1", app="sshd")


def _http_answer(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def relay_error(
    status: int,
    body: bytes,
    headers: dict[str, str],
    endpoint_type: str,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> ApiError:
    """The relay's path: a websocket upgrade answered with the row, through open_channel.

    With `monkeypatch`, the `websockets` library opens the connection (as with a proxy).
    """
    if monkeypatch is not None:
        monkeypatch.setattr("sshkit.relay.handshake.proxy_configured", lambda: True)
    with one_shot_http(lambda head: _http_answer(status, body, headers)) as port:
        target = TunnelTarget("s1", "sshd", session_mode=endpoint_type == "session")
        url = f"ws://127.0.0.1:{port}/stream/session/s1/tcpproxy?app=sshd"
        with pytest.raises(ApiError) as info:
            open_channel(url, {}, target, timeout=5)
    return info.value


def fields(error: ApiError) -> tuple[object, ...]:
    return (
        type(error),
        error.message,
        error.hint,
        error.status,
        error.title,
        error.msg,
        error.error_type,
        error.error_code,
    )


@pytest.mark.parametrize("opener", ["direct", "library"])
@pytest.mark.parametrize(
    ("status", "body", "headers", "endpoint_type", "kind", "fragment", "hint"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_client_and_relay_map_an_answer_alike(
    status: int,
    body: bytes,
    headers: dict[str, str],
    endpoint_type: str,
    kind: type[ApiError],
    fragment: str,
    hint: str | None,
    opener: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from_client = client_error(status, body, headers, endpoint_type)
    patch = monkeypatch if opener == "library" else None
    from_relay = relay_error(status, body, headers, endpoint_type, patch)
    assert type(from_client) is kind
    assert from_client.message.startswith("opening the tunnel to sshd failed: ")
    assert fragment in from_client.message
    assert from_client.hint == hint
    assert from_client.status == status
    assert "\n" not in from_client.message
    assert fields(from_relay) == fields(from_client)


def test_clock_skew_is_detected_by_the_message_not_the_type_alone() -> None:
    # The webserver wraps the manager's 400 in its own body; the type may be missing.
    bare = classify(400, {"msg": "Date/time sync error"}, what="x", endpoint_type="api")
    assert isinstance(bare, AuthError) and bare.hint == CLOCK_HINT
    # The old relay rule ("time" anywhere in msg) called this a clock problem.
    other = classify(400, {"msg": "invalid timeout"}, what="x", endpoint_type="api")
    assert isinstance(other, RejectedError) and other.hint is None


def test_without_a_session_the_404_quotes_the_server() -> None:
    error = classify(
        404, prob("object-not-found", "No such session."), what="looking up", endpoint_type="api"
    )
    assert isinstance(error, NotFoundError)
    assert error.message == "looking up failed: HTTP 404 No such session."


def test_oversized_or_broken_bodies_are_not_parsed() -> None:
    for body in (b"{" * 10, b"\xff\xfe", b"[1, 2]", b'{"title": 3}', b"x" * (2 << 20)):
        error = classify(500, body, what="x", endpoint_type="api")
        assert error.message == "x failed: HTTP 500 Internal Server Error"
        assert error.title is None and error.msg is None


# --- the relay's look-up behind a webserver 502 (api/tunnel.explain_bad_gateway) --------------


@pytest.mark.parametrize("case", ["401-session", "404-session", "403"])
def test_the_502_explanation_maps_like_the_handshake(case: str) -> None:
    (row,) = [c for c in CASES if c[0] == case]
    _, status, body, headers, _, _, _, _ = row
    seen: list[bytes] = []

    def answer(head: bytes) -> bytes:
        seen.append(head)
        return _http_answer(status, body, headers)

    with one_shot_http(answer) as port:
        conn = _conn("session", f"http://127.0.0.1:{port}")
        explained = explain_bad_gateway(conn, "s1", "sshd", {"X-BackendAI-SessionID": "SID"}, 5)
    assert explained is not None
    assert seen[0].startswith(b"GET /func/session/s1 HTTP/1.1\r\n")
    assert fields(explained) == fields(relay_error(status, body, headers, "session"))


def test_the_502_explanation_ignores_other_answers() -> None:
    with one_shot_http(lambda head: _http_answer(500, b"", {})) as port:
        conn = _conn("session", f"http://127.0.0.1:{port}")
        assert explain_bad_gateway(conn, "s1", "sshd", {}, 5) is None
    with one_shot_http(lambda head: _http_answer(200, b"{}", {})) as port:
        conn = _conn("session", f"http://127.0.0.1:{port}")
        assert explain_bad_gateway(conn, "s1", "sshd", {}, 5) is None


@contextmanager
def trickling_server() -> Iterator[int]:
    """Answers with a head, then a body one byte every 0.2 s: no read ever times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 100000\r\n\r\n")
                while not stop.wait(0.2):
                    conn.sendall(b" ")
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_the_502_explanation_has_a_wall_clock_deadline() -> None:
    with trickling_server() as port:
        conn = _conn("session", f"http://127.0.0.1:{port}")
        started = time.monotonic()
        explained = explain_bad_gateway(conn, "s1", "sshd", {}, 1.0)
        elapsed = time.monotonic() - started
    # Whatever it read by then is mapped (a 404: session not found), never waited for.
    assert explained is None or isinstance(explained, NotFoundError)
    assert elapsed < 5, elapsed


# --- close codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "mid_stream", "fragment", "hint"),
    [
        (1013, False, "the ttyd of session 's1' refused the connection", "starting"),
        (1011, False, "could not connect to the ttyd of session 's1' (close code 1011)", None),
        (1011, True, "the tunnel to the ttyd of session 's1' broke", "connect again"),
        (1013, True, "closed it with try again later (close code 1013)", "connect again"),
        (4000, False, "the server closed the tunnel with code 4000: bye", None),
    ],
)
def test_close_codes_name_the_app(
    code: int, mid_stream: bool, fragment: str, hint: str | None
) -> None:
    from sshkit.relay.pump import CloseInfo
    from sshkit.relay.ws import close_error

    target = TunnelTarget("s1", "ttyd")
    error = close_error(CloseInfo(code, "bye", False), target, mid_stream=mid_stream)
    assert error is not None and fragment in error.message
    assert (error.hint is None) if hint is None else (hint in (error.hint or ""))
    assert close_error(CloseInfo(1000, "", True), target) is None
