"""The relay's own websocket opening handshake (RFC 6455 §4.1), for direct connections.

Every ssh connection starts a relay, so its start-up is paid on every `ssh`.
Importing any part of `websockets` runs the package's `__init__`, whose version
lookup imports `importlib.metadata` (about 13 ms here), and its sync client
imports `urllib.request`, `logging`, `uuid` and the proxy machinery (about 20 ms
more): together a third of the relay's start-up (docs/relay.md). When no proxy is
configured, the relay connects and upgrades with the stdlib and this module
instead; with a proxy in the environment (or on macOS and Windows, where the
system proxy settings count too), `sshkit.relay.ws` lets `websockets` open the
connection as before.

Stdlib only, and strict: the answer must be `101` with the right
`Sec-WebSocket-Accept`, `Upgrade: websocket`, `Connection: upgrade`, and no
extension or subprotocol (none is offered). Any other status is a
`HandshakeStatus` carrying a bounded body, for the caller's error message;
redirects are not followed.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`. `ssl` is imported by the caller, for wss://
# only (about 5 ms of a relay's start-up).
TYPE_CHECKING = False

if TYPE_CHECKING:
    import ssl

# RFC 6455 §1.3.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Largest answer head, and largest error body kept for the message.
MAX_HEAD = 64 << 10
MAX_BODY = 64 << 10

# Environment variables that make `websockets` (through urllib's getproxies) use a
# proxy; their lower-case forms count too.
_PROXY_SUFFIX = "_proxy"


class HandshakeStatus(Exception):
    """The server answered the upgrade with a status other than 101."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        # Lower-case names: `Location` of a refused redirect, `Retry-After` of a 429.
        self.headers: Mapping[str, str] = headers or {}


class HandshakeFailed(Exception):
    """The server's answer is not a valid websocket upgrade (or the URL is unusable)."""


class BadTunnelURL(HandshakeFailed):
    """The tunnel URL cannot be connected to (not ws:// or wss://, no host, bad port)."""


def proxy_configured(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> bool:
    """Whether a proxy might apply, so that `websockets` should open the connection.

    Any non-empty `*_proxy` variable counts (`NO_PROXY` alone does not); on macOS
    and Windows urllib also reads the system's proxy settings, so there the library
    always decides.
    """
    if platform in ("darwin", "win32"):
        return True
    for name, value in environ.items():
        lowered = name.lower()
        if lowered.endswith(_PROXY_SUFFIX) and lowered != "no_proxy" and value:
            return True
    return False


def accept_key(key: bytes) -> bytes:
    """The `Sec-WebSocket-Accept` value the server must answer `key` with."""
    return binascii.b2a_base64(
        hashlib.sha1(key + _ACCEPT_GUID, usedforsecurity=False).digest(), newline=False
    )


def host_header(host: str, port: int, secure: bool) -> str:
    """The `Host` header: brackets around IPv6 addresses, the port unless the default."""
    if ":" in host:
        host = f"[{host}]"
    return host if port == (443 if secure else 80) else f"{host}:{port}"


def build_request(
    target: str, host: str, key: bytes, headers: Mapping[str, str], user_agent: str
) -> bytes:
    """The upgrade request for `target` (path and query) with `headers` added.

    Raises HandshakeFailed when a header carries a line break (it would split the request).
    """
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode('ascii')}",
        "Sec-WebSocket-Version: 13",
        f"User-Agent: {user_agent}",
    ]
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0"):
            raise HandshakeFailed(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names, repeated ones joined by ", ") of an answer head.

    Raises HandshakeFailed on a malformed status line or header.
    """
    text = head.decode("iso-8859-1")
    status_line, _, rest = text.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HandshakeFailed(f"malformed status line {status_line[:80]!r}")
    fields: dict[str, str] = {}
    for line in rest.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HandshakeFailed(f"malformed header line {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return int(parts[1]), fields


def check_upgrade(fields: Mapping[str, str], key: bytes) -> None:
    """Check the headers of a 101 answer against RFC 6455 §4.1. Raises HandshakeFailed."""

    def tokens(name: str) -> set[str]:
        return {t.strip().lower() for t in fields.get(name, "").split(",")}

    if "websocket" not in tokens("upgrade"):
        raise HandshakeFailed("missing Upgrade: websocket")
    if "upgrade" not in tokens("connection"):
        raise HandshakeFailed("missing Connection: upgrade")
    if fields.get("sec-websocket-accept", "").encode("ascii", "replace") != accept_key(key):
        raise HandshakeFailed("wrong Sec-WebSocket-Accept")
    if fields.get("sec-websocket-extensions"):
        raise HandshakeFailed("the server chose an extension, none was offered")
    if fields.get("sec-websocket-protocol"):
        raise HandshakeFailed("the server chose a subprotocol, none was offered")


def _dechunk(body: bytes) -> bytes:
    """The data of a chunked body, as far as it is complete (for an error message only)."""
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(body[pos:end].split(b";", 1)[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        """Seconds left; raises TimeoutError once none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("handshake timed out")
        return left


def _read_body(
    sock: socket.socket, fields: Mapping[str, str], body: bytes, deadline: _Deadline
) -> bytes:
    """Read an error answer's body, up to MAX_BODY bytes; stop early at EOF or the deadline."""
    length: int | None = None
    if fields.get("content-length", "").strip().isdigit():
        length = min(int(fields["content-length"]), MAX_BODY)
    chunked = "chunked" in fields.get("transfer-encoding", "").lower()
    data = bytearray(body)
    while len(data) < (length if length is not None else MAX_BODY):
        if chunked and b"\r\n0\r\n" in b"\r\n" + data:
            break
        try:
            sock.settimeout(deadline.left())
            more = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not more:
            break
        data += more
    raw = bytes(data[:MAX_BODY] if length is None else data[:length])
    return _dechunk(raw) if chunked else raw


def _handshake(sock: socket.socket, request: bytes, key: bytes, deadline: _Deadline) -> bytes:
    """Send `request`, check the answer; return the bytes that came after its head."""
    sock.settimeout(deadline.left())
    sock.sendall(request)
    head = bytearray()
    while True:
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(head) > MAX_HEAD:
            raise HandshakeFailed("the answer's head is too long")
        sock.settimeout(deadline.left())
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection during the handshake")
        head += data
    status, fields = parse_head(bytes(head[:end]))
    rest = bytes(head[end + 4 :])
    if status != 101:
        raise HandshakeStatus(status, _read_body(sock, fields, rest, deadline), fields)
    check_upgrade(fields, key)
    sock.settimeout(None)
    return rest


def open_direct(
    url: str,
    context: ssl.SSLContext | None,
    headers: Mapping[str, str],
    user_agent: str,
    timeout: float,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[socket.socket, bytes]:
    """Connect to `url` (ws:// or wss://, TLS with `context`) and upgrade, without a proxy.

    Returns the socket (blocking, TCP_NODELAY) and the bytes received after the
    answer's head (often sshd's banner already). The socket is closed on failure.
    Raises BadTunnelURL, HandshakeStatus, HandshakeFailed, TimeoutError,
    ssl.SSLError (certificate problems included) or OSError.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise BadTunnelURL(f"{url.split('?', 1)[0]!r} is not a ws:// or wss:// URL")
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        raise BadTunnelURL("the URL's port is not a number") from None
    if secure and context is None:
        raise BadTunnelURL("a wss:// URL needs a TLS context")
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = binascii.b2a_base64(random(16), newline=False)
    request = build_request(target, host_header(host, port, secure), key, headers, user_agent)
    deadline = _Deadline(timeout)
    # An ASCII name goes to getaddrinfo as bytes: a str is IDNA-encoded first, which
    # imports encodings.idna, stringprep and unicodedata (about 1.5 ms).
    address: str | bytes = host.encode("ascii") if host.isascii() else host
    sock = socket.create_connection((address, port), timeout=deadline.left())  # type: ignore[arg-type]
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        if context is not None:
            sock.settimeout(deadline.left())
            # As bytes for the same reason: ssl IDNA-encodes a str server_hostname.
            sock = context.wrap_socket(sock, server_hostname=address)
        return sock, _handshake(sock, request, key, deadline)
    except BaseException:
        sock.close()
        raise
