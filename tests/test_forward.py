"""`sshkit forward`: the listener against a local websocket server, then real ssh (emulator)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshkit.errors import LocalFileError, SshkitError, UsageError
from sshkit.relay.forward import Forwarder, parse_bind
from sshkit.relay.pump import Channel
from sshkit.relay.ws import TunnelTarget, open_channel
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import make_client, sshkit_argv
from tests.relay_fakes import FakeTunnelServer


@pytest.fixture
def server() -> Iterator[FakeTunnelServer]:
    with FakeTunnelServer().running() as srv:
        yield srv


def start(forwarder: Forwarder) -> threading.Thread:
    forwarder.bind()
    thread = threading.Thread(target=forwarder.serve, daemon=True)
    thread.start()
    return thread


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += chunk
        return received


def connector(server: FakeTunnelServer, name: str) -> Forwarder:
    target = TunnelTarget(name)

    def connect() -> Channel:
        return open_channel(server.url(name), {}, target, timeout=5)

    return Forwarder(connect=connect, target=target, host="127.0.0.1", port=0)


def test_parse_bind() -> None:
    assert parse_bind(None) == ("127.0.0.1", 9922)
    assert parse_bind("2222") == ("127.0.0.1", 2222)
    assert parse_bind("0.0.0.0:2222") == ("0.0.0.0", 2222)
    assert parse_bind("[::1]:2222") == ("::1", 2222)
    for bad in ("x", "host:", "70000", "a:b"):
        with pytest.raises(UsageError):
            parse_bind(bad)


def test_several_connections_in_a_row_and_at_once(server: FakeTunnelServer) -> None:
    forwarder = connector(server, "echo")
    thread = start(forwarder)
    port = forwarder.address[1]
    for i in range(3):
        payload = os.urandom(300_000) + f"#{i}".encode()
        assert exchange(port, payload) == payload
    results: list[bool] = []

    def one(i: int) -> None:
        payload = os.urandom(100_000)
        results.append(exchange(port, payload) == payload)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert results == [True] * 4
    assert server.connections == 7
    forwarder.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_busy_preferred_port_falls_back(server: FakeTunnelServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        forwarder = connector(server, "echo")
        forwarder.port = taken
        forwarder.bind()
        try:
            assert forwarder.fell_back
            assert forwarder.address[1] != taken
        finally:
            forwarder.close()
        strict = connector(server, "echo")
        strict.port, strict.fallback = taken, False
        with pytest.raises(LocalFileError, match=f"cannot listen on 127.0.0.1:{taken}"):
            strict.bind()


def test_failed_tunnel_closes_the_local_connection_and_reports(server: FakeTunnelServer) -> None:
    reported: list[SshkitError] = []
    forwarder = connector(server, "missing")
    forwarder.report = reported.append
    thread = start(forwarder)
    with socket.create_connection(("127.0.0.1", forwarder.address[1]), timeout=10) as sock:
        # The client sees EOF at once instead of a connection that hangs (23.09 bug).
        assert sock.recv(10) == b""
    forwarder.stop()
    thread.join(10)
    assert [e.message for e in reported] == [
        "opening the tunnel to sshd failed: session 'missing' not found"
    ]


def test_close_ends_open_connections_and_joins_threads(server: FakeTunnelServer) -> None:
    forwarder = connector(server, "echo")
    thread = start(forwarder)
    sock = socket.create_connection(("127.0.0.1", forwarder.address[1]), timeout=10)
    try:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        before = {t.name for t in threading.enumerate()}
        assert any(name.startswith("forward-") for name in before)
        forwarder.stop()
        thread.join(15)
        assert not thread.is_alive()
        assert sock.recv(10) == b""  # the forward closed our connection
        assert not [t for t in threading.enumerate() if t.name.startswith("forward-")]
    finally:
        sock.close()


# End to end: `sshkit forward` as a process, real ssh through it.


def first_line(proc: subprocess.Popen[str], seconds: float = 60) -> str:
    """The child's first stdout line; a child that stays silent is killed, not waited for."""
    assert proc.stdout is not None
    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    try:
        return proc.stdout.readline()
    finally:
        timer.cancel()


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs (a failed assertion must not leave it, or hang)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_forward_command_with_real_ssh(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    client = make_client(emulator_factory(), "api", tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        proc = subprocess.Popen(
            [*sshkit_argv(), "forward", client.emu.session, "-b", f"127.0.0.1:{taken}"],
            env=client.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = first_line(proc)
            match = re.match(r"Forwarding 127\.0\.0\.1:(\d+) to sshd of session ", line)
            assert match, line
            port = int(match.group(1))
            assert port != taken
            for i in range(3):
                argv = [
                    "ssh",
                    *client.ssh_options(),
                    "-p",
                    str(port),
                    f"{client.emu.ssh_user}@127.0.0.1",
                    f"echo forwarded-{i}",
                ]
                done = client.run(argv, timeout=60)
                assert done.returncode == 0, done.stderr.decode()
                assert done.stdout == f"forwarded-{i}\n".encode()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            assert time.monotonic() - started < 5
            assert proc.returncode == 0
            stderr = proc.stderr.read()
            assert f"port {taken} is in use; listening on port {port} instead" in stderr
        finally:
            stop(proc)
    # Nothing left listening.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_forward_ctrl_c_exits_cleanly(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    client = make_client(emulator_factory(), "api", tmp_path)
    proc = subprocess.Popen(
        [*sshkit_argv(), "forward", client.emu.session, "-b", "0"],
        env=client.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first_line(proc).startswith("Forwarding 127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
