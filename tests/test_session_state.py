"""Unit tests: session state (with the 26.1-26.3.3 fallback), waiting, the silent-tunnel
diagnosis, and the relay's first-byte watchdog. Fake clients and channels, fake clock."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from sshkit.api.models import AppInfo, SessionInfo
from sshkit.errors import NotFoundError, NotRunningError, RelayError, ServerError
from sshkit.relay.pump import Buffer, CloseInfo
from sshkit.relay.watchdog import FirstByteWatch
from sshkit.services.session_state import (
    explain_silent_tunnel,
    session_state,
    wait_for_refused_tunnel,
    wait_until_running,
)

SSHD_APPS = [AppInfo("sshd", "tcp")]


class FakeClient:
    """Answers get_session / session_apps from a script of statuses."""

    def __init__(self, statuses: list[str | Exception], apps: Any = SSHD_APPS) -> None:
        self.statuses = statuses
        self.apps = apps
        self.info_calls = 0

    def get_session(self, name: str) -> SessionInfo:
        item = self.statuses[min(self.info_calls, len(self.statuses) - 1)]
        self.info_calls += 1
        if isinstance(item, Exception):
            raise item
        return SessionInfo(item)

    def session_apps(self, name: str) -> list[AppInfo]:
        if isinstance(self.apps, Exception):
            raise self.apps
        return list(self.apps)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_state_falls_back_to_apps_on_the_26_3_info_500() -> None:
    bug = ServerError("x", status=500)
    assert session_state(FakeClient([bug]), "s").running  # type: ignore[arg-type]
    unknown = session_state(FakeClient([bug], apps=[]), "s")  # type: ignore[arg-type]
    assert unknown.status is None and unknown.info_failed
    with pytest.raises(ServerError):
        session_state(FakeClient([ServerError("x", status=503)]), "s")  # type: ignore[arg-type]


def test_wait_until_running_tells_once_and_returns() -> None:
    clock = Clock()
    told: list[str] = []
    client = FakeClient(["PREPARING", "PULLING", "PREPARING", "RUNNING"])
    state = wait_until_running(
        client,  # type: ignore[arg-type]
        "s",
        10,
        notify=told.append,
        sleep=clock.sleep,
        clock=clock,
    )
    assert state.running and len(told) == 1 and "PREPARING" in told[0]
    assert clock.now == 3.0


def test_wait_gives_up_after_wait_seconds() -> None:
    clock = Clock()
    with pytest.raises(NotRunningError, match="still PENDING after 5 s"):
        wait_until_running(
            FakeClient(["PENDING"]),  # type: ignore[arg-type]
            "s",
            5,
            notify=lambda line: None,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.now == 5.0


def test_wait_reports_an_ended_session_at_once() -> None:
    clock = Clock()
    told: list[str] = []
    with pytest.raises(NotRunningError, match=r"has ended \(status ERROR\)"):
        wait_until_running(
            FakeClient(["PREPARING", "ERROR"]),  # type: ignore[arg-type]
            "s",
            100,
            notify=told.append,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.now == 1.0 and len(told) == 1


def test_no_wait_for_a_running_session() -> None:
    told: list[str] = []
    wait_until_running(FakeClient(["RUNNING"]), "s", 10, notify=told.append)  # type: ignore[arg-type]
    assert told == []


@pytest.mark.parametrize(
    ("client", "error", "text"),
    [
        (FakeClient([NotFoundError("x", status=404)]), RelayError, "no longer exists"),
        (FakeClient(["PREPARING"]), NotRunningError, "PREPARING: not running yet"),
        (FakeClient(["TERMINATED"]), NotRunningError, "has ended (status TERMINATED)"),
        (FakeClient(["RUNNING"], apps=[AppInfo("ttyd")]), NotFoundError, "has no sshd service"),
        (FakeClient(["RUNNING"]), RelayError, "sshd of session 's' is not answering"),
        (FakeClient([ServerError("x", status=500)]), RelayError, "is not answering"),
        (FakeClient([ServerError("x", status=502)]), RelayError, "is not answering"),
    ],
)
def test_explain_silent_tunnel(client: FakeClient, error: type, text: str) -> None:
    found = explain_silent_tunnel(client, "s", "sshd", 10)  # type: ignore[arg-type]
    assert type(found) is error and text in found.message


class SilentChannel:
    """A channel whose recv blocks until aborted, or returns the scripted data."""

    def __init__(self, data: list[bytes] | None = None) -> None:
        self.data = list(data or [])
        self.aborted = threading.Event()

    def send(self, data: Buffer) -> None:
        pass

    def recv(self) -> Buffer | None:
        if self.data:
            return self.data.pop(0)
        self.aborted.wait(30)
        return None

    def close_send(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted.set()

    @property
    def close_info(self) -> CloseInfo | None:
        return CloseInfo(1001, initiated_by_us=True) if self.aborted.is_set() else None


def test_watchdog_fires_on_silence() -> None:
    inner = SilentChannel()
    watch = FirstByteWatch(inner, 0.3).start()
    started = time.monotonic()
    assert watch.recv() is None
    assert time.monotonic() - started < 5
    assert watch.silent
    info = watch.close_info
    assert info is not None and not info.clean  # the relay fails instead of ending quietly


def test_watchdog_stays_quiet_once_bytes_came() -> None:
    inner = SilentChannel([b"SSH-2.0-OpenSSH_9.2\r\n"])
    watch = FirstByteWatch(inner, 0.3).start()
    assert watch.recv() == b"SSH-2.0-OpenSSH_9.2\r\n"
    time.sleep(0.6)
    assert not watch.silent and not inner.aborted.is_set()
    watch.abort()
    assert watch.recv() is None and not watch.silent


class SplicingChannel(SilentChannel):
    """A channel that moves payloads to an fd itself, as the websocket does with splice."""

    def __init__(self, payloads: list[bytes]) -> None:
        super().__init__()
        self.payloads = list(payloads)

    def direct_sink_supported(self, fd: int) -> bool:
        return True

    def recv_to_fd(self, fd: int) -> int | None:
        if self.payloads:
            return os.write(fd, self.payloads.pop(0))
        self.aborted.wait(30)
        return None


def test_watchdog_keeps_the_splice_path_and_sees_its_first_byte() -> None:
    inner = SplicingChannel([b"SSH-2.0-OpenSSH_9.2\r\n"])
    watch = FirstByteWatch(inner, 0.3).start()
    read_end, write_end = os.pipe()
    try:
        assert watch.direct_sink_supported(write_end)
        assert watch.recv_to_fd(write_end) == 21
        assert os.read(read_end, 100) == b"SSH-2.0-OpenSSH_9.2\r\n"
        time.sleep(0.6)
        assert not watch.silent and not inner.aborted.is_set()
    finally:
        watch.abort()
        os.close(read_end)
        os.close(write_end)


def test_watchdog_without_a_splicing_channel_says_so() -> None:
    assert not FirstByteWatch(SilentChannel(), 1).direct_sink_supported(1)


def test_watchdog_fires_on_a_silent_splice_path() -> None:
    inner = SplicingChannel([])
    watch = FirstByteWatch(inner, 0.3).start()
    assert watch.recv_to_fd(1) is None
    assert watch.silent


def test_a_refused_tunnel_names_the_missing_app() -> None:
    client = FakeClient(["RUNNING"], apps=[AppInfo("ttyd"), AppInfo("jupyter")])
    with pytest.raises(NotFoundError) as info:
        wait_for_refused_tunnel(client, "s", "sshd", 10, notify=pytest.fail)  # type: ignore[arg-type]
    assert info.value.message == "session 's' has no 'sshd' service (it has: jupyter, ttyd)"
    assert "--app" in (info.value.hint or "")


def test_a_refused_tunnel_to_a_running_session_is_not_waited_for() -> None:
    client = FakeClient(["RUNNING"])
    assert not wait_for_refused_tunnel(client, "s", "sshd", 10, notify=pytest.fail)  # type: ignore[arg-type]
    assert client.info_calls == 0


def test_a_refused_tunnel_to_a_starting_session_waits_and_says_so_once() -> None:
    clock = Clock()
    told: list[str] = []
    client = FakeClient(["PREPARING", "PREPARING", "RUNNING"], apps=[])
    waited = wait_for_refused_tunnel(
        client,  # type: ignore[arg-type]
        "s",
        "sshd",
        10,
        notify=told.append,
        sleep=clock.sleep,
        clock=clock,
    )
    assert waited and len(told) == 1 and "PREPARING" in told[0]
    assert clock.now == 2.0
