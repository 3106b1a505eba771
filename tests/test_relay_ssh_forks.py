"""The relay inside ssh's process model: ssh forks with the ProxyCommand's pipes in use.

`ssh -f` goes to the background after authentication; `ControlPersist` hands the
connection to a forked master while the first ssh exits. The relay must carry on
as long as someone holds its pipes, and end once nobody does. Real OpenSSH
against the emulator; every test leaves no relay behind (conftest checks).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import leftover_processes
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import Client, make_client, sshkit_argv


@pytest.fixture
def client(emulator_factory: EmulatorFactory, tmp_path: Path) -> Client:
    return make_client(emulator_factory(), "api", tmp_path)


@pytest.fixture
def control_dir() -> Iterator[Path]:
    # A unix socket path must stay under ~104 bytes: pytest's tmp_path is too long.
    path = Path(tempfile.mkdtemp(prefix="sshkit-cm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_detached(
    client: Client, argv: list[str], tmp_path: Path, name: str, timeout: float = 60
) -> tuple[int, str, str]:
    """Run ssh with its output in files: a backgrounded ssh (and its relay) keeps
    inherited pipes open, which would make capturing them wait for its end."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as fout, err.open("wb") as ferr:
        proc = subprocess.run(
            argv, env=client.env, stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
            timeout=timeout,
        )  # fmt: skip
    return proc.returncode, out.read_text(), err.read_text()


def home(client: Client) -> Path:
    return Path(client.env["HOME"])


def wait_until(predicate: object, timeout: float) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `timeout`."""
    assert callable(predicate)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def test_control_persist_master_serves_more_commands_and_exits_cleanly(
    client: Client, tmp_path: Path, control_dir: Path
) -> None:
    session = client.emu.session
    mux = ["-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=60"]
    first = client.ssh(session, "echo first")
    first[1:1] = ["-o", "ControlMaster=auto", *mux]
    rc, out, err = run_detached(client, first, tmp_path, "first")
    assert (rc, out) == (0, "first\n"), err
    # The first ssh is gone; its forked master holds the relay's pipes.
    check = ["ssh", *client.ssh_options(), *mux, "-O", "check", f"{client.emu.ssh_user}@{session}"]
    time.sleep(1.0)
    rc, _, err = run_detached(client, check, tmp_path, "check")
    assert rc == 0 and "Master running" in err, err
    relays = leftover_processes.processes(home(client))
    assert len(relays) == 1, relays
    for i in range(5):
        again = client.ssh(session, f"echo again-{i}")
        again[1:1] = mux
        rc, out, err = run_detached(client, again, tmp_path, f"again{i}")
        assert (rc, out) == (0, f"again-{i}\n"), err
    # Five more commands, no new relay: all of them went through the master.
    assert leftover_processes.processes(home(client)) == relays
    stop = [*check]
    stop[stop.index("check")] = "exit"
    rc, _, err = run_detached(client, stop, tmp_path, "exit")
    assert rc == 0, err
    assert wait_until(lambda: not leftover_processes.processes(home(client)), 5) is not None
    assert not leftover_processes.processes(home(client), "ssh")


class _EchoServer:
    """A TCP server in the test that echoes every connection until EOF."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _echo_through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        received = bytearray()

        def send() -> None:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while data := conn.recv(1 << 20):
            received += data
        sender.join(30)
        return bytes(received)


def test_backgrounded_forward_carries_a_mebibyte(client: Client, tmp_path: Path) -> None:
    echo = _EchoServer()
    try:
        port = _free_port()
        argv = client.ssh(client.emu.session)
        argv[1:1] = ["-f", "-N", "-o", "ExitOnForwardFailure=yes",
                     "-L", f"127.0.0.1:{port}:127.0.0.1:{echo.port}"]  # fmt: skip
        rc, _, err = run_detached(client, argv, tmp_path, "forward")
        assert rc == 0, err
        # Long enough for the first ssh to have exited and the relay to be re-parented.
        time.sleep(2.0)
        payload = os.urandom(1 << 20)
        echoed = _echo_through(port, payload)
        assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(payload).hexdigest()
        assert len(echoed) == len(payload)
        relays = leftover_processes.processes(home(client))
        assert len(relays) == 1, relays
    finally:
        echo.close()
    # The background ssh ends: so does its relay, within 2 s.
    leftover_processes.kill_all(leftover_processes.processes(home(client), "ssh"))
    gone = wait_until(lambda: not leftover_processes.processes(home(client)), 5)
    assert gone is not None and gone < 2, gone


def test_backgrounded_command_runs(client: Client, tmp_path: Path) -> None:
    # The output comes back over the connection after ssh went to the background
    # (and its first process exited): it arrives only if the relay carried on.
    argv = client.ssh(client.emu.session, "sleep 1; echo ran")
    argv[1:1] = ["-f"]
    rc, _, err = run_detached(client, argv, tmp_path, "command")
    assert rc == 0, err
    out = tmp_path / "command.out"
    assert wait_until(lambda: out.read_text() == "ran\n", 20) is not None, out.read_text()
    # The command done, the background ssh exits and the relay with it.
    assert wait_until(lambda: not leftover_processes.processes(home(client)), 10) is not None


def _spawn_orphan_relay(client: Client) -> tuple[subprocess.Popen[bytes], int]:
    """A relay whose stdio pipes this test holds, started by a parent that is then killed:
    what OpenSSH's fork leaves (the pipes in use, the parent gone)."""
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen({[*sshkit_argv(), 'relay', client.emu.session]!r},"
        " stderr=subprocess.DEVNULL)\n"
        "sys.stderr.write(f'{p.pid}\\n'); sys.stderr.flush()\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        env=client.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert parent.stderr is not None
    return parent, int(parent.stderr.readline())


def test_relay_outlives_its_parent_while_the_pipes_are_in_use(client: Client) -> None:
    parent, pid = _spawn_orphan_relay(client)
    with parent:
        assert parent.stdin and parent.stdout
        banner = parent.stdout.readline()
        assert banner.startswith(b"SSH-2.0-"), banner
        parent.kill()
        parent.wait(10)
        time.sleep(1.0)
        assert pid in leftover_processes.processes(home(client)), "the relay died with its parent"
        # Still carrying bytes: sshd answers our banner with its key exchange.
        parent.stdin.write(b"SSH-2.0-forktest\r\n")
        parent.stdin.flush()
        assert parent.stdout.read1(65536)
        # Nobody reads stdout any more (stdin stays open): the relay ends within 2 s.
        parent.stdout.close()
        gone = wait_until(lambda: pid not in leftover_processes.processes(home(client)), 5)
        assert gone is not None and gone < 2, gone


def test_closing_stdin_ends_the_relay(client: Client) -> None:
    parent, pid = _spawn_orphan_relay(client)
    with parent:
        assert parent.stdin and parent.stdout
        assert parent.stdout.readline().startswith(b"SSH-2.0-")
        parent.kill()
        parent.wait(10)
        parent.stdin.close()
        gone = wait_until(lambda: pid not in leftover_processes.processes(home(client)), 5)
        assert gone is not None and gone < 2, gone
        assert parent.stdout.read() == b""
