"""Issue #12: real ssh through `sshkit relay` never hangs on what real servers do (spec §14).

In session mode the webserver swallows the manager's close codes, so a refused sshd or
an ended session is a silent open tunnel: the relay's first-byte watchdog must end it
with the cause. Sessions that are still starting are waited for; sessions that end
mid-transfer are ended by ssh's keepalive from the blocks sshkit writes (<= 45 s).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshkit.errors import ExitCode
from sshkit.formats.ssh_config import SshConfig, sshkit_host_block
from tests.emulator_fixture import HERMETIC_SSH, Emulator, EmulatorFactory
from tests.relay_e2e_support import Client, make_client, sshkit_argv

TIMEOUT = 3.0  # the relay's --timeout in these tests
CASES = [("23.09", "session"), ("26.8", "session"), ("26.8", "api")]


@pytest.fixture(params=CASES, ids=lambda c: "-".join(c))
def client(
    request: pytest.FixtureRequest, emulator_factory: EmulatorFactory, tmp_path: Path
) -> Iterator[Client]:
    version, mode = request.param
    emu = emulator_factory(server_version=version)
    yield make_client(emu, mode, tmp_path)
    emu.hook("DELETE", "faults")


def _new_session(emu: Emulator, **spec: object) -> str:
    name = f"nh-{uuid.uuid4().hex[:8]}"
    emu.hook("POST", "sessions", {"name": name, **spec})
    return name


def _drop(emu: Emulator, name: str) -> None:
    for item in emu.hook("GET", "sessions"):
        if item["name"] == name:
            emu.hook("DELETE", f"sessions/{item['id']}")


def _relay_alone(client: Client, session: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """`sshkit relay` run on its own, stdin an open pipe with nothing in it (as ssh does)."""
    start = time.monotonic()
    # stdin stays open and empty, as when ssh waits for the server's banner.
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [*sshkit_argv(), "relay", "--timeout", str(TIMEOUT), session],
            env=client.env,
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(read_end)
        out, err = proc.communicate(timeout=TIMEOUT * 4 + 30)
    finally:
        os.close(write_end)
    elapsed = time.monotonic() - start
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), elapsed


def _ssh_true(client: Client, session: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    start = time.monotonic()
    proc = client.run(client.ssh(session, "true", extra=f"--timeout {TIMEOUT}"), timeout=120)
    return proc, time.monotonic() - start


def _error_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode().splitlines() if ln.startswith("sshkit: error:")]
    assert len(lines) == 1, stderr.decode()
    return lines[0]


def test_sshd_refused(client: Client) -> None:
    emu = client.emu
    name = _new_session(emu)
    try:
        emu.hook("POST", "faults", {"kind": "refuse_sshd", "session": name})
        proc, elapsed = _ssh_true(client, name)
        assert proc.returncode != 0
        assert elapsed < TIMEOUT + 5 + 5  # the ssh start-up itself, on a loaded machine
        line = _error_line(proc.stderr)
        if client.mode == "api":
            assert "refused the connection (close code 1013)" in line
        else:
            assert f"the sshd of session '{name}' is not answering" in line
        relay, elapsed = _relay_alone(client, name)
        assert relay.stdout == b""
        assert relay.returncode == ExitCode.RELAY
        assert elapsed < TIMEOUT + 5
    finally:
        emu.hook("DELETE", "faults")
        _drop(emu, name)


def test_session_terminated_before_connecting(client: Client) -> None:
    emu = client.emu
    name = _new_session(emu)
    _drop(emu, name)
    proc, elapsed = _ssh_true(client, name)
    assert proc.returncode != 0 and elapsed < TIMEOUT + 10
    assert f"session '{name}' not found" in _error_line(proc.stderr)
    relay, elapsed = _relay_alone(client, name)
    assert relay.stdout == b"" and relay.returncode == ExitCode.NOT_FOUND
    assert elapsed < TIMEOUT + 5


def test_preparing_session_that_never_starts(client: Client) -> None:
    emu = client.emu
    name = _new_session(emu, status="PREPARING")
    try:
        proc, elapsed = _ssh_true(client, name)
        assert proc.returncode != 0 and elapsed < TIMEOUT + 10
        assert f"session '{name}' is still PREPARING after 3 s" in _error_line(proc.stderr)
        waiting = [ln for ln in proc.stderr.decode().splitlines() if "waiting up to" in ln]
        assert len(waiting) == 1
        relay, elapsed = _relay_alone(client, name)
        assert relay.stdout == b"" and relay.returncode == ExitCode.NOT_FOUND
        assert elapsed < TIMEOUT + 5
    finally:
        _drop(emu, name)


def test_session_that_starts_while_ssh_waits(client: Client) -> None:
    emu = client.emu
    name = _new_session(emu, status="PREPARING", ready_after=5)
    try:
        start = time.monotonic()
        # The relay's default --timeout (10 s) is also how long it waits for a start.
        proc = client.run(client.ssh(name, "echo started"), timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"started\n"
        assert time.monotonic() - start >= 4
        lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("sshkit:")]
        assert len(lines) == 1 and re.search(r"is PREPARING; waiting up to 10 s", lines[0])
    finally:
        _drop(emu, name)


def test_terminated_mid_transfer_ends_within_50_s(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Session mode: the tunnel goes silent; ssh's keepalive from sshkit's block ends it."""
    emu = emulator_factory(server_version="26.8")
    client = make_client(emu, "session", tmp_path)
    name = _new_session(emu)
    block = sshkit_host_block(
        alias=name,
        hostname=name,
        user=emu.ssh_user,
        identity_file=str(client.key),
        proxy_command=" ".join([*sshkit_argv(), "relay", "%h"]),
        host_key="off",
    )
    config = tmp_path / "ssh_config"
    config.write_bytes(SshConfig([]).upsert(block).render())
    argv = ["ssh", *HERMETIC_SSH[2:], "-F", str(config), name, "cat /dev/zero"]
    proc = subprocess.Popen(
        argv,
        env=client.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        got = 0
        while got < 4 << 20:  # the transfer is under way
            chunk = proc.stdout.read1(1 << 20)
            assert chunk, proc.stderr.read() if proc.stderr else b""
            got += len(chunk)
        emu.hook("DELETE", f"sessions/{name}")
        ended = time.monotonic()
        while proc.poll() is None and time.monotonic() - ended < 70:
            proc.stdout.read1(1 << 20)
        took = time.monotonic() - ended
        assert proc.poll() is not None, "ssh still running 70 s after the session ended"
        assert proc.returncode != 0
        assert took < 50, took
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        _drop(emu, name)


@pytest.mark.parametrize("mode", ["api", "session"])
def test_unknown_app_is_named(emulator_factory: EmulatorFactory, tmp_path: Path, mode: str) -> None:
    """Session mode hides the manager's "No such app service." behind a 502 (issue 16)."""
    emu = emulator_factory()
    client = make_client(emu, mode, tmp_path)
    proc = subprocess.run(
        [*sshkit_argv(), "relay", "--app", "nosuchapp", emu.session],
        env=client.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == ExitCode.NOT_FOUND and proc.stdout == b""
    line = _error_line(proc.stderr)
    assert f"session '{emu.session}' has no 'nosuchapp' service" in line
    assert "not found" not in line


@pytest.mark.parametrize("mode", ["api", "session"])
def test_ambiguous_name_in_the_relay(
    emulator_factory: EmulatorFactory, tmp_path: Path, mode: str
) -> None:
    emu = emulator_factory()
    client = make_client(emu, mode, tmp_path)
    name = f"twin-{uuid.uuid4().hex[:8]}"
    ids = [emu.hook("POST", "sessions", {"name": name})["id"] for _ in range(2)]
    try:
        relay, _ = _relay_alone(client, name)
        assert relay.returncode == ExitCode.NOT_FOUND and relay.stdout == b""
        line = _error_line(relay.stderr)
        assert f"2 sessions are named '{name}'" in line and all(i in line for i in ids)
        by_id = client.run(client.ssh(ids[0], "echo by-id"), timeout=120)
        assert by_id.returncode == 0 and by_id.stdout == b"by-id\n", by_id.stderr.decode()
    finally:
        for sid in ids:
            emu.hook("DELETE", f"sessions/{sid}")
