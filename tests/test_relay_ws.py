"""The websocket adapter against a real local websocket server (port 0)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.frames import Frame, Opcode

from sshkit.errors import AuthError, NetworkError, NotFoundError, RelayError, ServerError
from sshkit.relay.log import RelayLog
from sshkit.relay.pump import CloseInfo, Pump
from sshkit.relay.ws import TunnelTarget, close_error, open_channel
from tests.relay_fakes import (
    FakeTunnelServer,
    MemorySink,
    MemorySource,
    self_signed_cert,
    stalled_listener,
)


@pytest.fixture
def server() -> Iterator[FakeTunnelServer]:
    with FakeTunnelServer().running() as srv:
        yield srv


def run(server: FakeTunnelServer, name: str, chunks: list[bytes], *, end: bool = True):  # type: ignore[no-untyped-def]
    target = TunnelTarget(name)
    channel = open_channel(server.url(name), {"X-Test": "1"}, target, timeout=5)
    sink = MemorySink()
    pump = Pump(MemorySource(chunks, end=end), sink, channel)
    pump.start()
    assert pump.wait(20)
    return pump.result, sink, close_error(pump.result.close, target)


def test_echo_is_byte_exact_with_big_messages(server: FakeTunnelServer) -> None:
    chunks = [os.urandom(1 << 20) for _ in range(8)] + [b"x"]
    total = sum(map(len, chunks))
    channel = open_channel(server.url("echo"), {}, TunnelTarget("echo"), timeout=5)
    source, sink = MemorySource(chunks, end=False), MemorySink()
    pump = Pump(source, sink, channel)
    pump.start()
    deadline = time.monotonic() + 20
    while len(sink.data) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    # A websocket has no half-close: what the server sends after our close frame is
    # lost, so the source ends only once every echo arrived.
    source.end()
    assert pump.wait(10)
    result = pump.result
    assert close_error(result.close, TunnelTarget("echo")) is None
    assert result.source_ended
    assert result.close is not None and result.close.initiated_by_us
    assert hashlib.sha256(sink.data).hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_headers_are_sent(server: FakeTunnelServer) -> None:
    run(server, "echo", [b"hi"])
    headers = {k.lower(): v for k, v in server.requests[-1]["headers"].items()}
    assert headers["x-test"] == "1"
    assert headers["user-agent"].startswith("sshkit/")
    # No permessage-deflate: SSH bytes are encrypted and do not compress.
    assert "sec-websocket-extensions" not in headers


def test_server_close_1001_is_clean_and_flushes(server: FakeTunnelServer) -> None:
    result, sink, error = run(server, "goaway-after-10", [b"0123456789abc"], end=False)
    assert error is None
    assert result.close is not None and result.close.code == 1001
    assert bytes(sink.data) == b"0123456789"
    assert sink.closed


def test_refused_sshd_close_1013(server: FakeTunnelServer) -> None:
    _, sink, error = run(server, "refuse", [], end=False)
    assert isinstance(error, RelayError)
    assert "refused the connection" in error.message and "'refuse'" in error.message
    assert sink.data == b""


def test_dropped_connection_is_an_error(server: FakeTunnelServer) -> None:
    _, sink, error = run(server, "drop-after-5", [b"abcdefgh"], end=False)
    assert isinstance(error, RelayError)
    assert "lost" in error.message
    assert bytes(sink.data) == b"abcde"


def test_text_frames_never_reach_the_sink(server: FakeTunnelServer, tmp_path: Path) -> None:
    log = RelayLog(str(tmp_path / "relay.log"))
    channel = open_channel(server.url("text"), {}, TunnelTarget("text"), timeout=5, log=log)
    sink = MemorySink()
    pump = Pump(MemorySource([b"!"], end=False), sink, channel)
    pump.start()
    deadline = time.monotonic() + 10
    while bytes(sink.data) != b"data!" and time.monotonic() < deadline:
        time.sleep(0.01)
    pump.stop()
    assert pump.wait(5)
    assert bytes(sink.data) == b"data!"
    assert channel.text_messages == 1
    log.close()
    assert "ignored 1 text message(s), 34 bytes" in (tmp_path / "relay.log").read_text()


@pytest.mark.parametrize(
    ("name", "session_mode", "kind", "fragment"),
    [
        ("missing", False, NotFoundError, "session 'missing' not found"),
        ("noapp", False, NotFoundError, "has no 'sshd' service"),
        ("unauth", False, AuthError, "refused the access key"),
        ("unauth", True, AuthError, "login has expired"),
        ("badgw", True, ServerError, "may not exist or may not be running"),
        ("boom", False, ServerError, "HTTP 500"),
    ],
)
def test_http_errors_before_the_upgrade(
    server: FakeTunnelServer, name: str, session_mode: bool, kind: type, fragment: str
) -> None:
    started = time.monotonic()
    with pytest.raises(kind) as info:
        open_channel(server.url(name), {}, TunnelTarget(name, session_mode=session_mode))
    assert fragment in info.value.message
    assert "\n" not in info.value.message
    assert time.monotonic() - started < 5


def test_stalled_handshake_times_out_with_a_clear_message() -> None:
    with stalled_listener() as port:
        started = time.monotonic()
        with pytest.raises(NetworkError) as info:
            open_channel(
                f"ws://127.0.0.1:{port}/stream/session/s/tcpproxy?app=sshd",
                {},
                TunnelTarget("s"),
                timeout=1.0,
            )
        elapsed = time.monotonic() - started
    assert "no websocket handshake from 127.0.0.1 within 1 s" in info.value.message
    assert 0.9 < elapsed < 5


def test_unreachable_server_is_a_network_error() -> None:
    with stalled_listener() as port:
        pass  # now closed: nothing listens on `port`
    with pytest.raises(NetworkError) as info:
        open_channel(f"ws://127.0.0.1:{port}/x", {}, TunnelTarget("s"), timeout=2)
    assert "cannot reach 127.0.0.1" in info.value.message


def test_proxy_environment_is_honoured(
    server: FakeTunnelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that never answers: the relay must go through it, so the handshake stalls.
    with stalled_listener() as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "")
        with pytest.raises(NetworkError):
            open_channel(server.url("echo"), {}, TunnelTarget("echo"), timeout=1)
        # NO_PROXY exempts the host: the direct connection works.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        channel = open_channel(server.url("echo"), {}, TunnelTarget("echo"), timeout=5)
        channel.abort()


def test_tls_is_verified(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeTunnelServer(ssl_context=context).running() as server:
        url = server.url("echo", host="localhost")
        with pytest.raises(NetworkError) as info:
            open_channel(url, {}, TunnelTarget("echo"), timeout=5)
        assert "TLS certificate of localhost could not be verified" in info.value.message
        # With the CA bundle of the connection, the same server is trusted.
        channel = open_channel(url, {}, TunnelTarget("echo"), timeout=5, ca_bundle=str(cert))
        channel.send(b"over tls")
        assert channel.recv() == b"over tls"
        channel.abort()
        # Verification can be turned off explicitly (`--insecure`).
        channel = open_channel(url, {}, TunnelTarget("echo"), timeout=5, verify_tls=False)
        channel.abort()


def test_both_directions_at_once_over_tls(tmp_path: Path) -> None:
    # One thread writes while another reads the same TLS socket.
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeTunnelServer(ssl_context=context).running() as server:
        url = server.url("echo", host="localhost")
        channel = open_channel(url, {}, TunnelTarget("echo"), timeout=5, ca_bundle=str(cert))
        chunks = [os.urandom(1 << 20) for _ in range(16)]
        total = sum(map(len, chunks))
        source, sink = MemorySource(chunks, end=False), MemorySink()
        pump = Pump(source, sink, channel)
        pump.start()
        deadline = time.monotonic() + 60
        while len(sink.data) < total and time.monotonic() < deadline:
            time.sleep(0.01)
        source.end()
        assert pump.wait(10)
        assert close_error(pump.result.close, TunnelTarget("echo")) is None
        assert hashlib.sha256(sink.data).digest() == hashlib.sha256(b"".join(chunks)).digest()


def test_keepalive_timeout_message() -> None:
    error = close_error(CloseInfo(None, "keepalive ping timeout"), TunnelTarget("s"))
    assert error is not None
    assert error.message == "the server stopped answering (no pong for 20 s)"


@contextmanager
def one_shot_http(answer: Callable[[bytes], bytes]) -> Iterator[int]:
    """A TCP port that reads one request head and writes `answer(head)` in one go, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(answer(head))
            time.sleep(0.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


def _accept_key(head: bytes) -> str:
    key = re.search(rb"(?im)^sec-websocket-key: *(\S+)", head)
    assert key is not None
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key.group(1) + guid).digest()).decode()


def test_frames_in_the_same_packet_as_the_101_are_kept() -> None:
    # sshd speaks first: its banner may arrive with the upgrade answer.
    def answer(head: bytes) -> bytes:
        return (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {_accept_key(head)}\r\n\r\n"
        ).encode() + Frame(Opcode.BINARY, b"SSH-2.0-OpenSSH_9\r\n").serialize(mask=False)

    with one_shot_http(answer) as port:
        url = f"ws://127.0.0.1:{port}/stream/session/s/tcpproxy?app=sshd"
        channel = open_channel(url, {}, TunnelTarget("s"), timeout=5)
        assert bytes(channel.recv() or b"") == b"SSH-2.0-OpenSSH_9\r\n"
        channel.abort()


def test_a_wrong_accept_key_is_a_server_error() -> None:
    def answer(head: bytes) -> bytes:
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )

    with one_shot_http(answer) as port:
        url = f"ws://127.0.0.1:{port}/stream/session/s/tcpproxy?app=sshd"
        with pytest.raises(ServerError, match="did not complete the websocket handshake"):
            open_channel(url, {}, TunnelTarget("s"), timeout=5)


@pytest.mark.parametrize("length", [True, False])
def test_an_error_body_is_read_with_or_without_a_length(length: bool) -> None:
    body = json.dumps({"title": "No such session."}).encode()

    def answer(head: bytes) -> bytes:
        size = f"Content-Length: {len(body)}\r\n" if length else ""
        return f"HTTP/1.1 404 Not Found\r\n{size}\r\n".encode() + body

    with one_shot_http(answer) as port:
        url = f"ws://127.0.0.1:{port}/stream/session/gone/tcpproxy?app=sshd"
        with pytest.raises(NotFoundError, match="session 'gone' not found"):
            open_channel(url, {}, TunnelTarget("gone"), timeout=5)


def test_redirects_are_not_followed() -> None:
    def answer(head: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: ws://example.invalid/\r\nContent-Length: 0\r\n\r\n"

    with one_shot_http(answer) as port:
        url = f"ws://127.0.0.1:{port}/stream/session/s/tcpproxy?app=sshd"
        with pytest.raises(ServerError, match="HTTP 302"):
            open_channel(url, {}, TunnelTarget("s"), timeout=5)
