"""A small local tcpproxy-like websocket server and in-memory pump parts, for relay tests.

The server answers `/stream/session/{name}/tcpproxy` (with or without `/func`), and
the session name picks a behaviour:

* `echo`: echo binary messages; close 1000 after the client's close;
* `greet`: send b"HELLO\\n" first, then echo;
* `text`: send a text frame (what a broken server might do), then b"data", then echo;
* `refuse`: close with 1013 (the session's sshd refused the TCP connection);
* `fail`: close with 1011;
* `goaway-after-N`: echo, and after N bytes close with 1001 (sshd EOF);
* `drop-after-N`: echo N bytes, then drop the TCP connection without a close frame;
* `missing` / `noapp` / `unauth` / `badgw` / `boom`: HTTP 404 / 404 (app) / 401 / 502 / 500
  before the upgrade, problem+json bodies like the manager's.

Every request's headers are recorded in `requests` (for assertions only).
"""

from __future__ import annotations

import json
import queue
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from sshkit.relay.pump import Buffer, ChannelClosed, CloseInfo

PATH_RE = re.compile(r"^(?:/func)?/stream/session/([^/]+)/tcpproxy")

_HTTP_ERRORS = {
    "missing": (404, "Not Found", "object-not-found", "No such session."),
    "noapp": (404, "Not Found", "object-not-found", "No such app service."),
    "unauth": (401, "Unauthorized", "auth-failed", "Unauthorized access"),
    "badgw": (502, "Bad Gateway", "bad-gateway", "The proxy target server is inaccessible."),
    "boom": (500, "Internal Server Error", "internal-server-error", "Something went wrong."),
}


def _session(path: str) -> str:
    match = PATH_RE.match(path)
    return match.group(1) if match else ""


@dataclass
class FakeTunnelServer:
    host: str = "127.0.0.1"
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, session: str, host: str | None = None) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        where = f"{host or self.host}:{self.port}"
        return f"{scheme}://{where}/stream/session/{session}/tcpproxy?app=sshd"

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.requests.append({"path": request.path, "headers": dict(request.headers.raw_items())})
        name = _session(request.path)
        if not name:
            return conn.respond(404, "no such route\n")
        if name in _HTTP_ERRORS:
            status, reason, kind, title = _HTTP_ERRORS[name]
            body = json.dumps(
                {"type": f"https://api.backend.ai/probs/{kind}", "title": title}
            ).encode()
            headers = Headers(
                [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))]
            )
            return Response(status, reason, headers, body)
        return None

    def handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        name = _session(conn.request.path if conn.request else "")
        limit: int | None = None
        mode = "echo"
        if name.startswith(("drop-after-", "goaway-after-")):
            mode, _, count = name.rpartition("-")
            limit = int(count)
        if name == "refuse":
            conn.close(1013, "")
            return
        if name == "fail":
            conn.close(1011, "")
            return
        if name == "greet":
            conn.send(b"HELLO\n")
        if name == "text":
            conn.send("HTTP/1.1 503 Service Unavailable\r\n")
            conn.send(b"data")
        seen = 0
        try:
            for message in conn:
                if isinstance(message, str):
                    continue
                if limit is not None and seen + len(message) >= limit:
                    conn.send(message[: limit - seen])
                    if mode == "drop-after":
                        # No close frame: the TCP connection just goes away.
                        conn.socket.shutdown(socket.SHUT_RDWR)
                        conn.close_socket()
                    else:
                        conn.close(1001, "")
                    return
                seen += len(message)
                conn.send(message)
        except ConnectionClosed:
            pass

    @contextmanager
    def running(self) -> Iterator[FakeTunnelServer]:
        server = serve(
            self.handler,
            self.host,
            self.port,
            process_request=self.process_request,
            compression=None,
            max_size=None,
            ssl=self.ssl_context,
        )
        self.port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            thread.join(10)


def self_signed_cert(directory: Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """A throw-away certificate for `hostname` (and 127.0.0.1): (cert.pem, key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def serving(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A listener on 127.0.0.1 handing every connection to `handle` in a thread; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextmanager
def stalled_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a stalled handshake)."""
    accepted: list[socket.socket] = []
    try:
        with serving(accepted.append) as port:
            yield port
    finally:
        for client in accepted:
            client.close()


# In-memory parts for the pump.

_EOF = object()


class MemorySource:
    """Yields the given chunks, then b"" (or blocks until `feed`/`end`)."""

    def __init__(self, chunks: list[bytes] | None = None, *, end: bool = True) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        for chunk in chunks or []:
            self._queue.put(chunk)
        if end:
            self._queue.put(_EOF)

    def feed(self, data: bytes) -> None:
        self._queue.put(data)

    def end(self) -> None:
        self._queue.put(_EOF)

    def read(self) -> bytes:
        item = self._queue.get()
        if item is _EOF:
            self._queue.put(_EOF)
            return b""
        assert isinstance(item, bytes)
        return item


class MemorySink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.closed = False
        self.writes = 0
        self.fail_after = fail_after

    def write(self, data: Buffer) -> None:
        if self.closed:
            raise OSError("write to a closed sink")
        if self.fail_after is not None and len(self.data) + len(data) > self.fail_after:
            raise BrokenPipeError(32, "Broken pipe")
        self.writes += 1
        self.data += data

    def close(self) -> None:
        self.closed = True


class MemoryChannel:
    """The client end of an in-memory websocket; `peer_*` methods act as the server."""

    def __init__(self) -> None:
        self.to_server: queue.Queue[bytes | None] = queue.Queue()
        self._to_client: queue.Queue[bytes | CloseInfo] = queue.Queue()
        self._close: CloseInfo | None = None
        self._closed = threading.Event()
        self.close_sent: int | None = None
        self.aborted = False

    # Channel protocol (client side)
    def send(self, data: Buffer) -> None:
        if self._closed.is_set() or self.close_sent is not None:
            raise ChannelClosed("closed")
        self.to_server.put(bytes(data))

    def recv(self) -> bytes | None:
        item = self._to_client.get()
        if isinstance(item, CloseInfo):
            self._close = item
            self._closed.set()
            return None
        return item

    def close_send(self) -> None:
        self.close_sent = 1000
        self.to_server.put(None)

    def abort(self) -> None:
        self.aborted = True
        self._to_client.put(CloseInfo(None, "aborted", initiated_by_us=True))

    @property
    def close_info(self) -> CloseInfo | None:
        return self._close

    # Server side
    def peer_send(self, data: bytes) -> None:
        self._to_client.put(data)

    def peer_close(self, code: int | None, reason: str = "") -> None:
        self._to_client.put(CloseInfo(code, reason, initiated_by_us=self.close_sent is not None))

    def peer_recv(self, timeout: float = 10) -> bytes | None:
        return self.to_server.get(timeout=timeout)


def hashed_ca_dir(directory: Path, *certs: Path) -> Path:
    """`directory` holding `certs` (PEM files) under OpenSSL's hash-link names, as
    `openssl rehash` makes them: a CA directory for `--ca-bundle DIR` or a system store.

    Raises FileNotFoundError without the `openssl` command, CalledProcessError if it fails.
    """
    import shutil
    import subprocess

    directory.mkdir(parents=True, exist_ok=True)
    for number, cert in enumerate(certs):
        shutil.copyfile(cert, directory / f"ca-{number}.pem")
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    return directory
