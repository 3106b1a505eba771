"""`ssh -o ProxyCommand='sshkit relay %h'` with real OpenSSH clients through the emulator."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshkit.errors import ExitCode
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import Client, make_client, sshkit_argv

VERSIONS = ["23.09", "24.09", "26.3", "26.8"]
MODES = ["api", "session"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def scp(client: Client, src: str, dst: str) -> subprocess.CompletedProcess[bytes]:
    argv = ["scp", "-q", *client.ssh_options(), *client.proxy_option(), src, dst]
    return client.run(argv, timeout=240)


@pytest.fixture
def api_client(emulator_factory: EmulatorFactory, tmp_path: Path) -> Iterator[Client]:
    client = make_client(emulator_factory(), "api", tmp_path)
    yield client
    client.emu.hook("DELETE", "faults")


def arm(client: Client, kind: str, **spec: object) -> None:
    client.emu.hook(
        "POST", "faults", {"kind": kind, "session": client.emu.session, "count": 1, **spec}
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", VERSIONS)
def test_ssh_scp_through_the_relay(
    emulator_factory: EmulatorFactory, tmp_path: Path, version: str, mode: str
) -> None:
    client = make_client(emulator_factory(server_version=version), mode, tmp_path)
    session = client.emu.session
    proc = client.run(client.ssh(session, "echo ok"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"ok\n"
    assert proc.stderr == b""

    # A small scp both ways, byte-exact.
    src = random_file(tmp_path / "small.bin", (1 << 20) + 12345)
    remote = f"relay-small-{mode}-{version}.bin"
    up = scp(client, str(src), f"{client.emu.ssh_user}@{session}:{remote}")
    assert up.returncode == 0, up.stderr.decode()
    back = tmp_path / "small.back"
    down = scp(client, f"{client.emu.ssh_user}@{session}:{remote}", str(back))
    assert down.returncode == 0, down.stderr.decode()
    assert sha256_file(back) == sha256_file(src)


@pytest.mark.slow
def test_scp_256_mib_both_ways_is_byte_exact(api_client: Client, tmp_path: Path) -> None:
    session = api_client.emu.session
    src = random_file(tmp_path / "big.bin", 256 << 20)
    target = f"{api_client.emu.ssh_user}@{session}:relay-big.bin"
    up = scp(api_client, str(src), target)
    assert up.returncode == 0, up.stderr.decode()
    back = tmp_path / "big.back"
    down = scp(api_client, target, str(back))
    assert down.returncode == 0, down.stderr.decode()
    assert back.stat().st_size == 256 << 20
    assert sha256_file(back) == sha256_file(src)
    api_client.run(api_client.ssh(session, "rm -f relay-big.bin"))


def test_sftp_put_and_get(api_client: Client, tmp_path: Path) -> None:
    session = api_client.emu.session
    src = random_file(tmp_path / "put.bin", 3 << 20)
    back = tmp_path / "got.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} relay-sftp.bin\nget relay-sftp.bin {back}\nrm relay-sftp.bin\n")
    argv = [
        "sftp",
        *api_client.ssh_options(),
        *api_client.proxy_option(),
        "-b",
        str(batch),
        f"{api_client.emu.ssh_user}@{session}",
    ]
    proc = api_client.run(argv)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sha256_file(back) == sha256_file(src)


def test_four_concurrent_connections(api_client: Client) -> None:
    session = api_client.emu.session
    procs = [
        subprocess.Popen(
            api_client.ssh(session, f"sleep 1; echo conn-{i}"),
            env=api_client.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for i, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, err.decode()
        assert out == f"conn-{i}\n".encode()


def test_suffix_is_stripped(api_client: Client) -> None:
    session = api_client.emu.session
    argv = api_client.ssh(f"{session}.bai", "echo suffixed", extra="--suffix .bai")
    proc = api_client.run(argv)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"suffixed\n"


# Faults. The relay runs as ssh's ProxyCommand, or directly with pipes where
# stdout itself is under test.


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, limit: float = 5) -> float:
    """Seconds until `pid` is gone (or `limit`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit and alive(pid):
        time.sleep(0.02)
    return time.monotonic() - started


def relay_process(client: Client, session: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*sshkit_argv(), "relay", *args, session],
        env=client.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_dropped_websocket_fails_ssh_quickly(api_client: Client) -> None:
    session = api_client.emu.session
    arm(api_client, "drop_tcpproxy", after_bytes=2 << 20)
    started = time.monotonic()
    # The fault counts bytes sent to the client: download 64 MiB, dropped after 2.
    proc = api_client.run(api_client.ssh(session, "head -c 67108864 /dev/zero"), timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 5
    assert len(proc.stdout) < 2 << 20
    relay_lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("sshkit:")]
    # A drop is seen as EOF without a close frame, or as a reset when the kernel still
    # held bytes of ours the server never read (a race the splice path meets more often).
    lost = "sshkit: error: the connection to the server was lost"
    assert relay_lines in (
        [f"{lost} (no close frame)"],
        [f"{lost} (Connection reset by peer)"],
    )


def test_a_1011_after_data_flowed_is_not_a_connect_failure(api_client: Client) -> None:
    session = api_client.emu.session
    arm(api_client, "drop_tcpproxy", after_bytes=2 << 20, close_code=1011)
    proc = api_client.run(api_client.ssh(session, "head -c 67108864 /dev/zero"), timeout=60)
    assert proc.returncode != 0
    relay_lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("sshkit:")]
    assert relay_lines[0] == (
        f"sshkit: error: the tunnel to the sshd of session '{session}' broke: "
        "the server closed it with an internal error (close code 1011)"
    ), relay_lines
    assert "could not connect" not in proc.stderr.decode()


def test_dropped_websocket_relay_stdout_holds_only_sshd_bytes(api_client: Client) -> None:
    session = api_client.emu.session
    budget = 600
    arm(api_client, "drop_tcpproxy", after_bytes=budget)
    with relay_process(api_client, session) as relay:
        assert relay.stdin and relay.stdout and relay.stderr
        # Our banner; sshd answers with its banner and key exchange, and the drop
        # happens once `budget` bytes went to the client.
        relay.stdin.write(b"SSH-2.0-relaytest\r\n")
        relay.stdin.flush()
        # stdin stays open (closing it would be a clean end): read until the relay exits.
        out = relay.stdout.read()
        relay.wait(30)
        err = relay.stderr.read()
    assert relay.returncode == ExitCode.RELAY
    assert err.decode().splitlines() == [
        "sshkit: error: the connection to the server was lost (no close frame)"
    ]
    # Only sshd's own bytes: its banner and the start of its key exchange, cut short.
    banner = re.match(rb"SSH-2\.0-OpenSSH[^\r\n]*\r\n", out)
    assert banner, out[:80]
    packet = out[banner.end() :]
    # An SSH binary packet: uint32 length, padding length, then SSH_MSG_KEXINIT (20).
    assert len(packet) > 6 and packet[5] == 20
    assert int.from_bytes(packet[:4], "big") + 4 > len(packet)  # cut short by the drop
    assert len(out) <= budget
    assert b"sshkit" not in out and b"HTTP" not in out


def test_refused_sshd_is_a_clear_message(api_client: Client) -> None:
    session = api_client.emu.session
    arm(api_client, "refuse_sshd")
    proc = api_client.run(api_client.ssh(session, "true"), timeout=60)
    assert proc.returncode != 0
    assert (
        f"sshkit: error: the sshd of session '{session}' refused the connection (close code 1013)"
        in proc.stderr.decode()
    )


def test_stalled_handshake_times_out(api_client: Client) -> None:
    session = api_client.emu.session
    arm(api_client, "stall_handshake", seconds=30)
    relay = relay_process(api_client, session, "--timeout", "1.5")
    started = time.monotonic()
    out, err = relay.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert relay.returncode == ExitCode.NETWORK
    assert out == b""
    assert (
        err.decode()
        .splitlines()[0]
        .startswith("sshkit: error: no websocket handshake from 127.0.0.1 within 1.5 s")
    )
    assert elapsed < 6


@pytest.mark.parametrize("mode", MODES)
def test_unknown_session_is_a_clear_message(
    emulator_factory: EmulatorFactory, tmp_path: Path, mode: str
) -> None:
    client = make_client(emulator_factory(), mode, tmp_path)
    started = time.monotonic()
    proc = client.run(client.ssh("no-such-session", "true"), timeout=60)
    assert time.monotonic() - started < 10
    assert proc.returncode != 0
    assert (
        "sshkit: error: opening the tunnel to sshd failed: session 'no-such-session' not found"
        in proc.stderr.decode()
    )


def test_bad_credentials_are_a_clear_message(api_client: Client) -> None:
    api_client.env["SSHKIT_SECRET_KEY"] = "wrong-" + api_client.emu.secret_key[6:]
    relay = relay_process(api_client, api_client.emu.session)
    out, err = relay.communicate(timeout=30)
    assert relay.returncode == ExitCode.AUTH
    assert out == b""
    assert (
        err.decode()
        .splitlines()[0]
        .startswith(
            "sshkit: error: opening the tunnel to sshd failed:"
            " the server refused the access key or secret key: HTTP 401"
        )
    )
    assert api_client.emu.secret_key not in err.decode()


def test_expired_login_in_session_mode(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    client = make_client(emulator_factory(), "session", tmp_path)
    # Log out on the server only: the stored session id is now stale.
    logout = client.run([*sshkit_argv(), "logout"])
    assert logout.returncode == 0, logout.stderr.decode()
    relay = relay_process(client, client.emu.session)
    _, err = relay.communicate(timeout=30)
    assert relay.returncode in (ExitCode.AUTH, ExitCode.CONFIG)
    assert err.decode().startswith("sshkit: error: ")


def test_relay_exits_when_parent_ssh_is_killed(api_client: Client, tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    ssh = subprocess.Popen(
        api_client.ssh(api_client.emu.session, "sleep 60", extra=f"--log-file {log}"),
        env=api_client.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pid is None:
        if log.exists() and "websocket open" in log.read_text():
            pid = int(re.search(r"pid (\d+)", log.read_text()).group(1))  # type: ignore[union-attr]
        time.sleep(0.05)
    assert pid is not None, "the relay did not start"
    time.sleep(0.5)  # let the ssh session start
    ssh.kill()
    ssh.wait(10)
    gone_after = wait_gone(pid)
    assert gone_after < 2, f"relay still running {gone_after:.1f} s after ssh died"


def test_relay_without_a_stdout_pipe_falls_back_to_the_parent_watch(api_client: Client) -> None:
    # stdout is /dev/null, which cannot hang up, and stdin stays open (held by this
    # test): nothing on stdio tells that ssh is gone, so the parent watch does. With
    # pipes, a relay outlives its parent (tests/test_relay_ssh_forks.py).
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen({[*sshkit_argv(), 'relay', api_client.emu.session]!r},"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        env=api_client.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(1.0)
        os.kill(pid, 0)  # running
        parent.kill()
        parent.wait(10)
        assert wait_gone(pid) < 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_closes_cleanly(api_client: Client, signum: int) -> None:
    relay = relay_process(api_client, api_client.emu.session)
    assert relay.stdout is not None
    banner = relay.stdout.readline()
    assert banner.startswith(b"SSH-2.0-")
    relay.send_signal(signum)
    _, err = relay.communicate(timeout=10)
    assert relay.returncode == 0, err.decode()
    assert err == b""


def test_other_app_and_half_close(api_client: Client) -> None:
    # A session with the emulator's test-only `echo` app: stdout holds exactly the
    # echoed bytes; closing stdin ends the relay cleanly.
    name = f"relay-echo-{os.getpid()}"
    api_client.emu.hook("POST", "sessions", {"name": name, "apps": ["echo"]})
    try:
        payload = os.urandom(3 << 20)
        with relay_process(api_client, name, "--app", "echo") as relay:
            assert relay.stdin and relay.stdout and relay.stderr
            relay.stdin.write(payload)
            relay.stdin.flush()
            echoed = b""
            while len(echoed) < len(payload):
                chunk = relay.stdout.read1(1 << 20)
                assert chunk, "the relay ended early"
                echoed += chunk
            relay.stdin.close()
            assert relay.stdout.read() == b""
            assert relay.wait(10) == 0
            assert relay.stderr.read() == b""
        assert echoed == payload
    finally:
        api_client.emu.hook("DELETE", f"sessions/{name}")


def test_dropbear_session(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    # Real sessions run dropbear, not OpenSSH.
    client = make_client(emulator_factory(sshd="dropbear"), "api", tmp_path)
    proc = client.run(client.ssh(client.emu.session, "echo via-dropbear"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"via-dropbear\n"
