"""The relay's websocket channel on a socket pair: control frames, closing, keepalive, aborts.

The test plays the server on the other end of the pair, writing frames serialized
by the `websockets` library and reading the client's frames with its parser.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from sshkit.relay.pump import ChannelClosed
from sshkit.relay.ws import TunnelTarget, WebSocketChannel, close_error


class Peer:
    """The server's end of the pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = StreamReader()

    def send(self, opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> None:
        self.sock.sendall(Frame(opcode, data, fin).serialize(mask=False))

    def close(self, code: int, reason: str = "") -> None:
        self.send(Opcode.CLOSE, Close(code, reason).serialize())

    def frame(self, timeout: float = 5) -> Frame:
        """The next client frame (unmasked)."""
        self.sock.settimeout(timeout)
        parser = Frame.parse(self.reader.read_exact, mask=True)
        try:
            while True:
                next(parser)
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError
                self.reader.feed_data(data)
        except StopIteration as done:
            frame: Frame = done.value
            return frame

    def frames_until(self, opcode: Opcode, timeout: float = 5) -> list[Frame]:
        seen = []
        while True:
            frame = self.frame(timeout)
            seen.append(frame)
            if frame.opcode is opcode:
                return seen


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, Peer]]:
    client, server = socket.socketpair()
    yield client, Peer(server)
    client.close()
    server.close()


def channel_on(
    client: socket.socket, leftover: bytes = b"", **kwargs: float | None
) -> WebSocketChannel:
    kwargs.setdefault("ping_interval", None)
    return WebSocketChannel(client, leftover, **kwargs)  # type: ignore[arg-type]


def test_bytes_after_the_handshake_come_first(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    banner = Frame(Opcode.BINARY, b"SSH-2.0-test\r\n").serialize(mask=False)
    channel = channel_on(client, banner[:5])
    peer.sock.sendall(banner[5:])
    got = b""
    while len(got) < 14:
        data = channel.recv()
        assert data is not None
        got += bytes(data)
    assert got == b"SSH-2.0-test\r\n"
    channel.abort()


def test_sent_data_arrives_as_binary_frames_of_bounded_size(
    pair: tuple[socket.socket, Peer],
) -> None:
    client, peer = pair
    channel = channel_on(client)
    payload = bytes(range(256)) * 1000
    threading.Thread(target=channel.send, args=(payload,), daemon=True).start()
    got = b""
    while len(got) < len(payload):
        frame = peer.frame()
        assert frame.opcode is Opcode.BINARY and frame.fin
        assert len(frame.data) <= 64 << 10
        got += frame.data
    assert got == payload
    channel.abort()


def test_a_ping_is_answered_with_its_payload(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.send(Opcode.PING, b"are you there")
    peer.send(Opcode.BINARY, b"after")
    assert bytes(channel.recv() or b"") == b"after"
    pong = peer.frame()
    assert pong.opcode is Opcode.PONG and pong.data == b"are you there"
    channel.abort()


def test_server_close_is_echoed_and_data_before_it_is_delivered(
    pair: tuple[socket.socket, Peer],
) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.send(Opcode.BINARY, b"last words")
    peer.close(1001)
    assert bytes(channel.recv() or b"") == b"last words"
    assert channel.recv() is None
    info = channel.close_info
    assert info is not None and info.code == 1001 and not info.initiated_by_us
    assert close_error(info, TunnelTarget("s")) is None
    echo = peer.frame()
    assert echo.opcode is Opcode.CLOSE and Close.parse(echo.data).code == 1001


def test_refused_close_code_reaches_the_error_message(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.close(1013)
    assert channel.recv() is None
    error = close_error(channel.close_info, TunnelTarget("s1"))
    assert error is not None and "refused the connection (close code 1013)" in error.message


def test_close_send_then_the_server_answers(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    channel.close_send()
    with pytest.raises(ChannelClosed):
        channel.send(b"too late")
    assert Close.parse(peer.frame().data).code == 1000
    peer.send(Opcode.BINARY, b"still draining")
    peer.close(1000)
    assert bytes(channel.recv() or b"") == b"still draining"
    assert channel.recv() is None
    info = channel.close_info
    assert info is not None and info.initiated_by_us and info.clean


def test_close_send_gives_up_after_the_close_timeout(pair: tuple[socket.socket, Peer]) -> None:
    client, _peer = pair
    channel = channel_on(client, close_timeout=0.2)
    channel.close_send()
    start = time.monotonic()
    assert channel.recv() is None
    assert time.monotonic() - start < 3
    info = channel.close_info
    assert info is not None and info.clean  # we asked to close; the server was just slow


def test_a_dropped_connection_is_an_error(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.send(Opcode.BINARY, b"partial")
    peer.sock.shutdown(socket.SHUT_RDWR)
    assert bytes(channel.recv() or b"") == b"partial"
    assert channel.recv() is None
    error = close_error(channel.close_info, TunnelTarget("s"))
    assert error is not None and error.message == (
        "the connection to the server was lost (no close frame)"
    )


def test_broken_framing_fails_the_connection_with_1002(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.sock.sendall(Frame(Opcode.BINARY, b"masked").serialize(mask=True))
    assert channel.recv() is None
    assert Close.parse(peer.frame().data).code == 1002
    error = close_error(channel.close_info, TunnelTarget("s"))
    assert error is not None
    assert "protocol error: masked frame from the server" in error.message


def test_text_messages_are_dropped_and_counted(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client)
    peer.send(Opcode.TEXT, b"HTTP/1.1 503 Service Unavailable\r\n", fin=False)
    peer.send(Opcode.CONT, b"more text")
    peer.send(Opcode.BINARY, b"ssh")
    assert bytes(channel.recv() or b"") == b"ssh"
    assert channel.text_messages == 1
    channel.abort()


def test_keepalive_pings_and_a_silent_server_times_out(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client, ping_interval=0.1, ping_timeout=0.3)
    start = time.monotonic()
    assert channel.recv() is None
    assert time.monotonic() - start < 5
    error = close_error(channel.close_info, TunnelTarget("s"))
    assert error is not None and error.message.startswith("the server stopped answering")
    frames = peer.frames_until(Opcode.CLOSE)
    assert frames[0].opcode is Opcode.PING
    assert Close.parse(frames[-1].data).code == 1011


def test_keepalive_answered_keeps_the_channel_open(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client, ping_interval=0.1, ping_timeout=0.3)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                frame = peer.frame(timeout=0.5)
            except (TimeoutError, EOFError, OSError):
                continue
            if frame.opcode is Opcode.PING:
                peer.send(Opcode.PONG, frame.data)

    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(channel.recv()), daemon=True)
    reader.start()
    reader.join(1.5)
    assert reader.is_alive()  # still waiting for data, not timed out
    stop.set()
    channel.abort()
    reader.join(5)
    assert got == [None]


def test_keepalive_pings_at_the_interval_whatever_the_timeout(
    pair: tuple[socket.socket, Peer],
) -> None:
    # A pong timeout longer than the interval must not stretch the period
    # (it did: interval + timeout between pings).
    client, peer = pair
    interval, timeout, window = 0.1, 0.5, 1.5
    channel = channel_on(client, ping_interval=interval, ping_timeout=timeout)
    reader = threading.Thread(target=channel.recv, daemon=True)
    reader.start()
    pings: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < window:
        try:
            frame = peer.frame(timeout=0.5)
        except TimeoutError:
            continue
        if frame.opcode is Opcode.PING:
            pings.append(time.monotonic() - start)
            peer.send(Opcode.PONG, frame.data)
    channel.abort()
    reader.join(5)
    expected = window / interval
    # Generous margins for a loaded machine; interval + timeout would give about 2.
    assert expected * 0.7 <= len(pings) <= expected + 1, pings
    mean_gap = (pings[-1] - pings[0]) / (len(pings) - 1)
    assert mean_gap == pytest.approx(interval, rel=0.3), pings
    assert channel.close_info is not None and channel.close_info.initiated_by_us


def test_a_busy_reader_is_not_taken_for_a_dead_server(pair: tuple[socket.socket, Peer]) -> None:
    client, peer = pair
    channel = channel_on(client, ping_interval=0.05, ping_timeout=0.1)
    # Nobody calls recv(): the reader is busy elsewhere (writing to a slow ssh).
    time.sleep(0.6)
    peer.send(Opcode.BINARY, b"still here")
    assert bytes(channel.recv() or b"") == b"still here"
    assert channel.close_info is None
    channel.abort()


def test_abort_unblocks_a_sender_stuck_on_a_full_socket(pair: tuple[socket.socket, Peer]) -> None:
    client, _peer = pair
    channel = channel_on(client)
    errors: list[BaseException] = []

    def flood() -> None:
        try:
            while True:
                channel.send(b"x" * (64 << 10))
        except ChannelClosed as exc:
            errors.append(exc)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    time.sleep(0.3)  # the peer reads nothing: the socket buffers fill and sendall blocks
    start = time.monotonic()
    channel.abort()
    sender.join(5)
    assert not sender.is_alive() and errors
    assert time.monotonic() - start < 3
    assert channel.recv() is None
    info = channel.close_info
    assert info is not None and info.initiated_by_us


def test_a_ping_during_a_blocked_upload_does_not_block_the_reader(
    pair: tuple[socket.socket, Peer],
) -> None:
    client, peer = pair
    channel = channel_on(client)
    upload = b"u" * (4 << 20)

    def send() -> None:
        with contextlib.suppress(ChannelClosed):  # the abort at the end
            channel.send(upload)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    time.sleep(0.3)  # the peer reads nothing yet: the sender is stuck in sendall
    peer.send(Opcode.PING, b"p1")
    peer.send(Opcode.BINARY, b"download")
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(bytes(channel.recv() or b"")))
    reader.start()
    reader.join(3)
    assert got == [b"download"]
    # The pong goes out after the frame the sender was writing.
    frames = peer.frames_until(Opcode.PONG)
    assert frames[-1].data == b"p1"
    assert all(f.opcode is Opcode.BINARY for f in frames[:-1])
    channel.abort()
    sender.join(5)


def test_masking_keys_are_fresh_and_drawn_a_pool_at_a_time(
    pair: tuple[socket.socket, Peer],
) -> None:
    # One getrandom per 1024 frames, not one per frame; no key is used twice.
    client, peer = pair
    calls: list[int] = []

    def random(n: int) -> bytes:
        calls.append(n)
        start = len(calls) << 24  # every 4-byte key in every pool differs
        return b"".join((start + i).to_bytes(4, "big") for i in range(n // 4))

    channel = WebSocketChannel(client, b"", ping_interval=None, random=random)
    frames = 1500

    def send_all() -> None:  # in a thread: a socketpair holds only some hundred frames
        for i in range(frames):
            channel.send(bytes([i % 256]))

    threading.Thread(target=send_all, daemon=True).start()
    raw = b""
    peer.sock.settimeout(5)
    while len(raw) < frames * 7:  # 2 header bytes, the 4-byte key, 1 payload byte
        raw += peer.sock.recv(65536)
    keys = [raw[i * 7 + 2 : i * 7 + 6] for i in range(frames)]
    payloads = [raw[i * 7 + 6] ^ raw[i * 7 + 2] for i in range(frames)]
    assert payloads == [i % 256 for i in range(frames)]
    assert len(set(keys)) == frames
    assert calls == [4096, 4096]
    assert keys[0] == (1 << 24).to_bytes(4, "big") and keys[1024] == (2 << 24).to_bytes(4, "big")
    channel.abort()
