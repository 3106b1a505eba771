"""The relay's own opening handshake (sshkit.relay.handshake), piece by piece.

Whole handshakes against a real `websockets` server are in tests/test_relay_ws.py.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading

import pytest

from sshkit.relay.handshake import (
    BadTunnelURL,
    HandshakeFailed,
    HandshakeStatus,
    accept_key,
    build_request,
    check_upgrade,
    host_header,
    open_direct,
    parse_head,
    proxy_configured,
)


def test_accept_key_is_the_rfc_example() -> None:
    # RFC 6455 §1.3.
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = base64.b64encode(b"0123456789abcdef")
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert accept_key(key) == base64.b64encode(hashlib.sha1(key + guid).digest())


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", False),
        ({"NO_PROXY": "*"}, "linux", False),
        ({"HTTPS_PROXY": ""}, "linux", False),
        ({"https_proxy": "http://p:3128"}, "linux", True),
        ({"WSS_PROXY": "http://p:3128"}, "linux", True),
        ({"SOCKS_PROXY": "socks5://p:1080"}, "linux", True),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_a_proxy_sends_the_connection_through_the_library(
    environ: dict[str, str], platform: str, expected: bool
) -> None:
    assert proxy_configured(environ, platform) is expected


def test_host_header() -> None:
    assert host_header("example.org", 443, True) == "example.org"
    assert host_header("example.org", 80, False) == "example.org"
    assert host_header("example.org", 8443, True) == "example.org:8443"
    assert host_header("::1", 8080, False) == "[::1]:8080"


def test_request_and_header_injection() -> None:
    request = build_request("/p?app=sshd", "h:1", b"a2V5", {"X-A": "1"}, "ua/1")
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /p?app=sshd HTTP/1.1"
    assert {"Host: h:1", "Upgrade: websocket", "Connection: Upgrade", "X-A: 1"} <= set(lines)
    assert request.endswith(b"\r\n\r\n")
    with pytest.raises(HandshakeFailed):
        build_request("/", "h", b"k", {"X-A": "1\r\nX-Evil: 1"}, "ua")


def test_head_parsing_and_upgrade_checks() -> None:
    key = b"a2V5a2V5a2V5a2V5a2V5aw=="
    status, fields = parse_head(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key)
    )
    assert status == 101
    assert fields["connection"] == "keep-alive, Upgrade"
    check_upgrade(fields, key)
    for broken in (
        {"upgrade": "h2c"},
        {"connection": "close"},
        {"sec-websocket-accept": "nope"},
        {"sec-websocket-extensions": "permessage-deflate"},
        {"sec-websocket-protocol": "chat"},
    ):
        with pytest.raises(HandshakeFailed):
            check_upgrade({**fields, **broken}, key)
    for head in (b"SSH-2.0-OpenSSH", b"HTTP/1.1 abc x", b"HTTP/1.1 101 x\r\nno colon"):
        with pytest.raises(HandshakeFailed):
            parse_head(head)


def one_answer(answer: bytes) -> tuple[str, threading.Thread]:
    """A server that answers any request with `answer` and closes; its ws:// URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"ws://127.0.0.1:{listener.getsockname()[1]}/x", thread


def test_a_chunked_error_body_is_read() -> None:
    url, thread = one_answer(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"tit\r\n9\r\nle": "x"}\r\n0\r\n\r\n'
    )
    with pytest.raises(HandshakeStatus) as info:
        open_direct(url, None, {}, "ua", 5)
    thread.join(5)
    assert info.value.status == 404
    assert info.value.body == b'{"title": "x"}'


def test_bad_urls() -> None:
    with pytest.raises(BadTunnelURL):
        open_direct("http://example.org/x", None, {}, "ua", 1)
    with pytest.raises(BadTunnelURL):
        open_direct("ws://example.org:port/x", None, {}, "ua", 1)
    with pytest.raises(BadTunnelURL):
        open_direct("wss://example.org/x", None, {}, "ua", 1)
