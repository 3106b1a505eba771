"""`sshkit forward`: a local TCP listener, one tunnel websocket per accepted connection.

For clients that cannot run a ProxyCommand (FileZilla, some PuTTY setups). Unlike
the 23.09 client, a connection whose tunnel cannot be opened is closed at once
(the client sees EOF instead of hanging), and the reason goes to stderr.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sshkit.errors import LocalFileError, SshkitError, UsageError
from sshkit.relay.log import RelayLog
from sshkit.relay.pump import Channel, Pump
from sshkit.relay.stdio import SocketSink, SocketSource
from sshkit.relay.ws import TunnelTarget, close_error

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9922
ACCEPT_POLL = 0.2


def parse_bind(spec: str | None) -> tuple[str, int]:
    """`[HOST:]PORT` (or `[V6]:PORT`) → (host, port); None → the defaults.

    Raises UsageError for a malformed spec.
    """
    if not spec:
        return DEFAULT_HOST, DEFAULT_PORT
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"invalid bind address {spec!r}: expected [HOST:]PORT") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port}: expected 0-65535")
    return host, port


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":  # pragma: no cover
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            # Lets a restarted forward reuse its port while old connections linger
            # in TIME_WAIT; on POSIX this does not allow two listeners on one port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class Forwarder:
    """Accept local connections and pump each through its own channel from `connect`."""

    connect: Callable[[], Channel]
    target: TunnelTarget
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    fallback: bool = True
    log: RelayLog | None = None
    report: Callable[[SshkitError], object] | None = None
    address: tuple[str, int] = field(default=("", 0), init=False)
    fell_back: bool = field(default=False, init=False)
    connections: int = field(default=0, init=False)
    _sock: socket.socket | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _active: dict[int, tuple[socket.socket, Pump | None]] = field(default_factory=dict, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)

    def bind(self) -> tuple[str, int]:
        """Listen on host:port, or on a free port when that one is busy and fallback is on.

        Raises LocalFileError when the address cannot be used.
        """
        try:
            self._sock = _listen(self.host, self.port)
        except OSError as exc:
            busy = exc.errno in (errno.EADDRINUSE, errno.EACCES)
            if not (busy and self.fallback and self.port != 0):
                raise LocalFileError(
                    f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                ) from None
            try:
                self._sock = _listen(self.host, 0)
            except OSError as exc2:
                raise LocalFileError(
                    f"cannot listen on {self.host}: {exc2.strerror or exc2}"
                ) from None
            self.fell_back = True
        self._sock.settimeout(ACCEPT_POLL)
        bound = self._sock.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    def serve(self) -> None:
        """Accept connections until `stop()` (or Ctrl-C in the calling thread)."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        try:
            while not self._stop.is_set():
                try:
                    client, _peer = self._sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                client.settimeout(None)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.connections += 1
                number = self.connections
                thread = threading.Thread(
                    target=self._handle, args=(client, number), name=f"forward-{number}"
                )
                with self._lock:
                    self._active[number] = (client, None)
                    self._threads = [t for t in self._threads if t.is_alive()]
                    self._threads.append(thread)
                thread.start()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `serve()` to return; safe from any thread and from signal handlers."""
        self._stop.set()

    def close(self) -> None:
        """Stop listening, end every connection and join their threads."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            active = list(self._active.values())
            threads = list(self._threads)
        for client, pump in active:
            if pump is not None:
                pump.stop()
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(10)

    def _handle(self, client: socket.socket, number: int) -> None:
        try:
            if self.log:
                self.log.write(f"connection {number}: opening the tunnel")
            try:
                channel = self.connect()
            except SshkitError as exc:
                if self.log:
                    self.log.write(f"connection {number}: {exc.message}")
                if self.report:
                    self.report(exc)
                return
            pump = Pump(SocketSource(client), SocketSink(client), channel, name=f"forward-{number}")
            with self._lock:
                stopping = self._stop.is_set()
                self._active[number] = (client, pump)
            if stopping:
                channel.abort()
            result = pump.run()
            # The tunnel is closed; the local client may still be connected and its
            # reader thread blocked in recv(): a shutdown wakes it up.
            channel.abort()
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            pump.join(5)
            if self.log:
                self.log.write(
                    f"connection {number}: done, up {result.bytes_up} B,"
                    f" down {result.bytes_down} B, close={result.close}"
                )
            error = (
                None
                if result.stopped
                else close_error(result.close, self.target, mid_stream=result.bytes_down > 0)
            )
            if error is not None and self.report:
                self.report(error)
        finally:
            with self._lock:
                self._active.pop(number, None)
            client.close()
