"""Byte sources and sinks over raw file descriptors (stdin/stdout) and sockets.

The relay reads and writes fds 0 and 1 directly, never `sys.stdout`: stdout carries
SSH bytes only, unbuffered and binary.
"""

from __future__ import annotations

import os
import socket
import sys

from sshkit.relay.pump import Buffer

# One read may return this much. ssh writes into a pipe, so a read returns what
# the pipe holds (64 KiB by default on Linux); bigger reads matter for sockets and
# for pipes grown with F_SETPIPE_SZ. The Backend.AI manager accepts messages up to
# 16 MiB (manager.max-wsmsg-size), so stay well below that.
DEFAULT_CHUNK = 1 << 20

_readv = getattr(os, "readv", None)


def grow_pipe(fd: int, size: int = DEFAULT_CHUNK) -> None:
    """Grow the pipe behind `fd` to `size` bytes (Linux), so one read or write moves more.

    ssh talks to its ProxyCommand through pipes of 64 KiB; with 1 MiB pipes the relay
    makes far fewer system calls. Not a pipe, not Linux, or over the system limit:
    nothing happens.
    """
    if sys.platform != "linux":
        return
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        pass


def is_tls_socket(sock: object) -> bool:
    """Whether `sock` is an `ssl.SSLSocket`, without importing `ssl`.

    The relay imports `ssl` only for wss:// tunnels (about 5 ms of its start-up);
    when nothing imported it, no socket can be a TLS one.
    """
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def is_certificate_error(exc: BaseException) -> bool:
    """Whether `exc` is an `ssl.SSLCertVerificationError` (see `is_tls_socket`)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLCertVerificationError)


def set_binary(fd: int) -> None:
    """Make `fd` binary on Windows (the C runtime opens stdio in text mode there)."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        msvcrt.setmode(fd, os.O_BINARY)


class FdSource:
    """Read chunks of up to `chunk` bytes from a file descriptor."""

    def __init__(self, fd: int = 0, chunk: int = DEFAULT_CHUNK) -> None:
        self.fd = fd
        self.chunk = chunk
        set_binary(fd)
        grow_pipe(fd, chunk)

        # One buffer, reused: a fresh 1 MiB `bytes` per read costs page faults
        # (measured: half the relay's system time).
        self._buffer = bytearray(chunk)
        self._view = memoryview(self._buffer)

    def read(self) -> Buffer:
        if _readv is None:  # pragma: no cover - Windows has no readv
            return os.read(self.fd, len(self._buffer))
        return self._view[: _readv(self.fd, [self._buffer])]


class FdSink:
    """Write to a file descriptor, unbuffered; `close` closes the fd (EOF for the reader).

    With `hold_open`, `close` leaves the fd open for its owner to close with
    `release` (or the process exit).
    """

    def __init__(self, fd: int = 1, *, hold_open: bool = False) -> None:
        self.fd = fd
        self._hold_open = hold_open
        self._closed = False
        set_binary(fd)
        grow_pipe(fd)

    def write(self, data: Buffer) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def direct_fd(self) -> int | None:
        """The fd, for a channel that writes into it itself (`Pump`, os.splice)."""
        return None if self._closed else self.fd

    def close(self) -> None:
        if not self._hold_open:
            self.release()

    def release(self) -> None:
        """Close the fd now."""
        if not self._closed:
            self._closed = True
            os.close(self.fd)


class SocketSource:
    """Read chunks from a connected socket."""

    def __init__(self, sock: socket.socket, chunk: int = DEFAULT_CHUNK) -> None:
        self.sock = sock
        self._buffer = bytearray(chunk)
        self._view = memoryview(self._buffer)

    def read(self) -> memoryview:
        return self._view[: self.sock.recv_into(self._buffer)]


class SocketSink:
    """Write to a connected socket; `close` shuts down our sending side."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: Buffer) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
