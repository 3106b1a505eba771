"""Downloads spliced from the socket to a pipe carry the same bytes as the copying path.

The server side is a real TCP peer on loopback writing frames serialized by the
`websockets` library, cut at arbitrary points; the client side is the relay's
`WebSocketChannel` read three ways: `recv_to_fd` into a pipe (os.splice), the
same loop copying (`PayloadMover(use_splice=False)`), and `recv` (the path TLS
and non-pipe sinks take).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from sshkit.relay.frames import FrameParser
from sshkit.relay.pump import Pump
from sshkit.relay.splice import PayloadMover, can_splice
from sshkit.relay.stdio import FdSink
from sshkit.relay.ws import TunnelTarget, WebSocketChannel, close_error
from tests.relay_e2e_support import make_client
from tests.relay_fakes import MemorySource

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not hasattr(os, "splice"), reason="os.splice is Linux-only"
)


@contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


# A frame: (kind, size). Binary frames carry payload; the others are what a server
# may mix in: pings, text messages (dropped), binary messages in two fragments.
FRAME = st.one_of(
    st.tuples(
        st.just("binary"),
        st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 65535, 65536, 70000, 300000])),
    ),
    st.tuples(st.just("ping"), st.integers(0, 125)),
    st.tuples(st.just("text"), st.integers(0, 200)),
    st.tuples(st.just("fragmented"), st.integers(2, 5000)),
)


def wire_of(frames: list[tuple[str, int]]) -> tuple[bytes, bytes]:
    """The server's byte stream for `frames` and a final close, and the binary payload."""
    wire = bytearray()
    payload = bytearray()
    for kind, size in frames:
        data = os.urandom(size)
        if kind == "binary":
            wire += Frame(Opcode.BINARY, data).serialize(mask=False)
            payload += data
        elif kind == "ping":
            wire += Frame(Opcode.PING, data).serialize(mask=False)
        elif kind == "text":
            wire += Frame(Opcode.TEXT, b"x" * size).serialize(mask=False)
        else:
            half = size // 2
            wire += Frame(Opcode.BINARY, data[:half], fin=False).serialize(mask=False)
            wire += Frame(Opcode.CONT, data[half:]).serialize(mask=False)
            payload += data
    wire += Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(mask=False)
    return bytes(wire), bytes(payload)


def serve(server: socket.socket, wire: bytes, cuts: list[int]) -> threading.Thread:
    """Send `wire` in pieces cut at `cuts`, and drain what the client sends."""

    def run() -> None:
        points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
        try:
            for start, end in itertools.pairwise(points):
                server.sendall(wire[start:end])
                time.sleep(0.001)
        except OSError:  # the client went away (the closed-pipe test)
            return
        server.settimeout(5)
        try:
            while server.recv(65536):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_pipe(fd: int, into: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := os.read(fd, 1 << 20):
            into.extend(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def through(how: str, wire: bytes, cuts: list[int], leftover_size: int) -> tuple[bytes, int | None]:
    """The bytes `how` delivers for `wire`, and the close code it saw."""
    leftover, rest = wire[:leftover_size], wire[leftover_size:]
    with tcp_pair() as (client, server):
        channel = WebSocketChannel(client, leftover, ping_interval=None)
        sender = serve(server, rest, cuts)
        out = bytearray()
        if how == "recv":
            while (data := channel.recv()) is not None:
                out += data
        else:
            r, w = os.pipe()
            reader = read_pipe(r, out)
            try:
                if how == "splice":
                    assert channel.direct_sink_supported(w)
                    while channel.recv_to_fd(w) is not None:
                        pass
                else:
                    mover = PayloadMover(client, w, channel._parser, leftover, use_splice=False)
                    channel._leftover = b""
                    while True:
                        result = mover.move()
                        if result is None:
                            break
                        if isinstance(result, list) and any(
                            channel._control(event) for event in result
                        ):
                            break
            finally:
                os.close(w)
                reader.join(10)
                os.close(r)
        sender.join(10)
    info = channel.close_info
    return bytes(out), info.code if info else None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    frames=st.lists(FRAME, max_size=12),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
    leftover=st.integers(0, 400),
)
def test_splice_copy_and_recv_carry_the_same_bytes(
    frames: list[tuple[str, int]], cuts: list[int], leftover: int
) -> None:
    wire, payload = wire_of(frames)
    leftover = min(leftover, len(wire))
    for how in ("splice", "copy", "recv"):
        data, code = through(how, wire, cuts, leftover)
        assert len(data) == len(payload), how
        assert data == payload, how
        assert code == 1000, how


def test_a_big_stream_is_spliced_byte_exact() -> None:
    frames = [("binary", 256 << 10)] * 40 + [("ping", 4), ("binary", 3)]
    wire, payload = wire_of(frames)
    data, code = through("splice", wire, [5, 70000, 3 << 20], 17)
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
    assert code == 1000


def test_splice_applies_only_to_plain_tcp_into_a_pipe_on_linux(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with tcp_pair() as (client, _server):
            assert can_splice(client, w)
            assert not can_splice(client, w, platform="darwin")
            assert not can_splice(client, w, platform="win32")
            assert not can_splice(client, w, environ={"SSHKIT_RELAY_SPLICE": "0"})
            with (tmp_path / "out").open("wb") as f:
                assert not can_splice(client, f.fileno())  # a file, not a pipe
            a, b = socket.socketpair()
            with a, b:
                assert not can_splice(client, a.fileno())  # a socket, not a pipe
                assert not can_splice(a, w)  # not a TCP socket
            ctx = ssl.create_default_context()
            tls = ctx.wrap_socket(
                socket.socket(), server_hostname="x", do_handshake_on_connect=False
            )
            with tls:
                assert not can_splice(tls, w)
    finally:
        os.close(r)
        os.close(w)


def test_the_pump_splices_into_a_pipe_and_copies_into_anything_else(tmp_path: Path) -> None:
    wire, payload = wire_of([("binary", 100000), ("ping", 2), ("binary", 5)])

    def pump_into(fd: int, expect_splice: bool) -> None:
        with tcp_pair() as (client, server):
            channel = WebSocketChannel(client, b"", ping_interval=None)
            spliced: list[bool] = []
            original = channel.recv_to_fd

            def spy(out: int) -> int | None:
                spliced.append(True)
                return original(out)

            channel.recv_to_fd = spy  # type: ignore[method-assign]
            sender = serve(server, wire, [])
            pump = Pump(MemorySource([], end=False), FdSink(fd), channel)
            pump.start()
            assert pump.wait(10)
            sender.join(10)
            assert close_error(pump.result.close, TunnelTarget("t")) is None
            assert pump.result.bytes_down == len(payload)
            assert bool(spliced) == expect_splice

    r, w = os.pipe()
    out = bytearray()
    reader = read_pipe(r, out)
    pump_into(w, expect_splice=True)  # the sink closes w: the reader sees EOF
    reader.join(10)
    os.close(r)
    assert bytes(out) == payload

    path = tmp_path / "out.bin"
    file_fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    pump_into(file_fd, expect_splice=False)  # the sink closes the fd
    assert path.read_bytes() == payload


def test_a_splice_the_kernel_refuses_falls_back_to_copying(tmp_path: Path) -> None:
    # splice(2) needs a pipe on one side: into a regular file it fails with EINVAL,
    # and the mover must carry on by copying, without losing a byte.
    wire, payload = wire_of([("binary", 70000), ("binary", 10), ("binary", 300000)])
    path = tmp_path / "out.bin"
    refused: list[OSError] = []
    with tcp_pair() as (client, server), path.open("wb") as f:
        sender = serve(server, wire, [3, 5000])
        parser = FrameParser()
        mover = PayloadMover(
            client, f.fileno(), parser, use_splice=True, on_fallback=refused.append
        )
        controls = []
        while (result := mover.move()) is not None:
            if isinstance(result, list) and result:
                controls += result
                break
        sender.join(10)
    assert [e.errno for e in refused] == [errno.EINVAL]
    assert not mover.use_splice
    assert path.read_bytes() == payload
    assert controls and controls[0].opcode == 0x8


def test_a_closed_pipe_is_a_sink_error_not_a_server_error() -> None:
    wire, _ = wire_of([("binary", 1 << 20)] * 4)
    with tcp_pair() as (client, server):
        channel = WebSocketChannel(client, b"", ping_interval=None)
        sender = serve(server, wire, [])
        r, w = os.pipe()
        os.close(r)
        with pytest.raises(BrokenPipeError):
            while channel.recv_to_fd(w) is not None:
                pass
        os.close(w)
        channel.abort()
        sender.join(10)


@pytest.mark.parametrize("splice_on", ["1", "0"])
def test_real_ssh_downloads_through_both_paths(
    emulator_factory,
    tmp_path: Path,
    splice_on: str,  # type: ignore[no-untyped-def]
) -> None:
    client = make_client(emulator_factory(), "api", tmp_path)
    log = tmp_path / "relay.log"
    client.env["SSHKIT_RELAY_SPLICE"] = splice_on
    client.env["SSHKIT_LOG"] = str(log)
    remote = f"splice-{splice_on}.bin"
    size = (6 << 20) + 4321
    make = client.run(
        client.ssh(
            client.emu.session, f"head -c {size} /dev/urandom > {remote}; sha256sum {remote}"
        )
    )
    assert make.returncode == 0, make.stderr.decode()
    expected = make.stdout.split()[0].decode()
    down = client.run(client.ssh(client.emu.session, f"cat {remote}"), timeout=120)
    assert down.returncode == 0, down.stderr.decode()
    assert len(down.stdout) == size
    assert hashlib.sha256(down.stdout).hexdigest() == expected
    spliced = "downloads: os.splice" in log.read_text()
    assert spliced == (splice_on == "1")


def test_a_silent_server_times_out_while_splicing() -> None:
    # The keepalive must still see a reader that waits for the server in splice().
    with tcp_pair() as (client, _server):
        channel = WebSocketChannel(client, b"", ping_interval=0.1, ping_timeout=0.3)
        r, w = os.pipe()
        try:
            start = time.monotonic()
            assert channel.recv_to_fd(w) is None
            assert time.monotonic() - start < 5
        finally:
            os.close(r)
            os.close(w)
    error = close_error(channel.close_info, TunnelTarget("s"))
    assert error is not None and error.message.startswith("the server stopped answering")


def test_a_full_pipe_is_not_taken_for_a_dead_server() -> None:
    # ssh does not read for a while: the pipe fills, splice() waits for room, and the
    # keepalive (whose pings the server here never answers) must not give up.
    wire, payload = wire_of([("binary", 256 << 10)] * 12)
    with tcp_pair() as (client, server):
        channel = WebSocketChannel(client, b"", ping_interval=0.05, ping_timeout=0.1)
        sender = serve(server, wire, [])
        r, w = os.pipe()
        out = bytearray()
        moved: list[int | None] = []

        def pump() -> None:
            while (n := channel.recv_to_fd(w)) is not None:
                moved.append(n)
            moved.append(None)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        time.sleep(0.8)  # nobody reads the pipe (64 KiB) meanwhile
        assert channel.close_info is None
        reader = read_pipe(r, out)
        sender.join(10)
        thread.join(10)
        os.close(w)
        reader.join(10)
        os.close(r)
    assert bytes(out) == payload
    assert channel.close_info is not None and channel.close_info.code == 1000
