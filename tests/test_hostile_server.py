"""A hostile server cannot redirect credentials, stall sshkit, exhaust its memory or
write escape sequences to the terminal (issue 14, items 1, 2, 4, 5, 7)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshkit.api.client import BackendClient
from sshkit.api.limits import DEADLINE_ENV, MAX_JSON_BODY, deadline_seconds
from sshkit.cli._errors import report
from sshkit.credentials import StoredLogin, write_login
from sshkit.errors import ConfigError, ExitCode, NetworkError, ServerError, SshkitError
from sshkit.settings import Connection
from tests.hostile_server import Hostile, hostile_server

# Anything a terminal acts on: C0 (but not the newline between lines), DEL, C1.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def session_conn(url: str) -> Connection:
    return Connection(
        endpoint=url,
        endpoint_type="session",
        access_key=None,
        secret_key=None,
        session_id="SID-SECRET-123",
        api_version=None,
        verify_tls=True,
        ca_bundle=None,
        profile="default",
    )


def store_session_login(url: str) -> None:
    write_login(
        "default",
        StoredLogin(endpoint=url, endpoint_type="session", session_id="SID-SECRET-123"),
    )


def sshkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------ 1: redirects


def test_api_requests_never_follow_a_redirect() -> None:
    with hostile_server("redirect") as srv:
        with pytest.raises(ServerError, match="redirects"):
            BackendClient(session_conn(srv.url)).get_session("s1")
        assert srv.second_hits == []


def test_relay_502_explanation_sends_nothing_to_a_redirect_target() -> None:
    with hostile_server("bad-gateway-redirect") as srv:
        store_session_login(srv.url)
        proc = sshkit("relay", "--timeout", "5", "s1")
        assert proc.returncode != 0
        assert any(p.startswith("GET /func/session/s1") for p in srv.requests)
        assert srv.second_hits == [], "a redirect carried the request to another listener"
        assert "SID-SECRET-123" not in proc.stderr


# ---------------------------------------------------------- 4 and 5: time and size


def test_slowloris_answer_ends_at_the_deadline() -> None:
    with hostile_server("slowloris") as srv:
        client = BackendClient(session_conn(srv.url), deadline=2.0)
        start = time.monotonic()
        with pytest.raises(NetworkError, match=r"did not finish answering within 2 s") as info:
            client.get_session("s1")
        elapsed = time.monotonic() - start
        assert DEADLINE_ENV in (info.value.hint or "")
    assert elapsed < 20, elapsed  # today: ~600 s (a byte every 0.2 s keeps reads alive)


def test_cli_deadline_is_configurable_and_one_line() -> None:
    with hostile_server("slowloris") as srv:
        store_session_login(srv.url)
        start = time.monotonic()
        proc = sshkit("whoami", env={DEADLINE_ENV: "2"})
        elapsed = time.monotonic() - start
    assert proc.returncode == ExitCode.NETWORK, proc.stderr
    assert proc.stderr.count("\n") <= 2
    assert "within 2 s" in proc.stderr
    assert elapsed < 30


def test_deadline_default_and_bad_values() -> None:
    assert deadline_seconds({}) == 120.0
    assert deadline_seconds({DEADLINE_ENV: "7.5"}) == 7.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ConfigError):
            deadline_seconds({DEADLINE_ENV: bad})


def test_huge_json_answer_is_refused_early() -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with hostile_server("huge") as srv:
        with pytest.raises(ServerError, match="larger than 8 MiB"):
            BackendClient(session_conn(srv.url)).get_session("s1")
        time.sleep(0.2)
        sent = srv.sent_bytes
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # The server stops when the socket closes; buffers in between hold a few MiB at most.
    assert sent < 64 * 1024 * 1024, sent
    assert grown_kib < 4 * MAX_JSON_BODY // 1024, grown_kib


# --------------------------------------------------------- 7: escape sequences


def test_escape_sequences_in_error_are_not_printed_raw() -> None:
    with hostile_server("escape", status=500) as srv:
        store_session_login(srv.url)
        proc = sshkit("whoami")
    assert proc.returncode == ExitCode.SERVER
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b]52;c;" in proc.stderr  # shown, escaped


def test_escape_sequences_in_websocket_close_reason() -> None:
    with hostile_server("ws-close") as srv:
        store_session_login(srv.url)
        log = Path(os.environ["HOME"]) / "relay.log"
        # stdin stays open (as ssh keeps it): the relay must end because the server closed.
        relay = subprocess.Popen(
            [sys.executable, "-m", "sshkit", "relay", "--log-file", str(log), "s1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            code = relay.wait(timeout=60)
        finally:
            _, err = relay.communicate(timeout=30)  # closes stdin and both pipes
        stderr = err.decode()
    assert code == ExitCode.RELAY, stderr
    assert "\\x1b]0;pwned" in stderr
    assert not RAW_CONTROL.search(stderr)
    assert not RAW_CONTROL.search(log.read_text())


def test_escape_sequences_in_a_redirect_location(capsys: pytest.CaptureFixture[str]) -> None:
    # aiohttp refuses control characters in headers, so a fake transport sends this one.
    from tests.api_fakes import Reply, fake_session

    evil = "http://x/\x1b]52;c;eA==\x07\x1b[2J"
    http, _ = fake_session(lambda req: Reply(302, b"", {"Location": evil}))
    with pytest.raises(ServerError) as info:
        BackendClient(session_conn("http://h"), http=http).get_session("s1")
    report(info.value)
    err = capsys.readouterr().err
    assert "redirects to http://x/\\x1b]52;c;" in err
    assert not RAW_CONTROL.search(err)


SERVER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x2070, exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=SERVER_TEXT, status=st.sampled_from([400, 401, 403, 404, 409, 500, 503]))
def test_property_no_server_string_reaches_stderr_raw(
    payload: str, status: int, capsys: pytest.CaptureFixture[str], server: Hostile
) -> None:
    server.payload = payload
    server.status = status
    client = BackendClient(session_conn(server.url))
    for call in (lambda: client.get_session("s1"), client.whoami):
        with pytest.raises(SshkitError) as info:
            call()
        report(info.value)
    err = capsys.readouterr().err
    assert not RAW_CONTROL.search(err), repr(err)
    assert err.count("\n") == err.count("sshkit: ")


@pytest.fixture(scope="module")
def server() -> object:
    with hostile_server("escape") as srv:
        yield srv
