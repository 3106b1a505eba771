"""Downloads without copies through Python: websocket payloads spliced from the socket to a pipe.

On Linux, when stdout is a pipe (OpenSSH's ProxyCommand stdout is one) and the
websocket runs on a plain TCP socket, `os.splice` moves each binary payload from
the socket to the pipe in the kernel: Python reads only the frame headers (2 to
10 bytes each) and the small control frames. Everywhere else (TLS, where the
kernel holds no plaintext; a stdout that is a file or a terminal; macOS and
Windows) the same loop copies through a reused buffer, and a splice that the
kernel refuses at run time switches to that copy by itself.

The frame rules stay in `FrameParser`: this module asks it how many bytes come
next (`next_read`), feeds it headers and control frames, and tells it about the
payload bytes moved past it (`skip`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import sys
from collections.abc import Callable, Mapping

from sshkit.relay.frames import Control, FrameParser
from sshkit.relay.stdio import is_tls_socket

# One splice or copy moves at most this much (the pipe is grown to 1 MiB).
MAX_MOVE = 1 << 20
# Header, control and text bytes are read in pieces of at most this much.
SMALL_READ = 64 << 10
_splice = getattr(os, "splice", None)
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 0)
# What splice(2) answers when one of the two files cannot be spliced.
_SPLICE_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ESPIPE}
)


class SinkFailed(Exception):
    """Writing to the output fd failed (the reader went away); `error` says how."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def is_pipe(fd: int) -> bool:
    """Whether `fd` is a pipe (or FIFO)."""
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


# Set to 0 to turn splicing off (to compare both paths, or to rule it out).
SPLICE_ENV = "SSHKIT_RELAY_SPLICE"


def can_splice(
    sock: socket.socket,
    fd: int,
    platform: str = sys.platform,
    environ: Mapping[str, str] = os.environ,
) -> bool:
    """Whether payloads from `sock` may be spliced into `fd`: Linux, plain TCP, a pipe.

    SSHKIT_RELAY_SPLICE=0 in `environ` turns it off.
    """
    return (
        platform == "linux"
        and environ.get(SPLICE_ENV, "1") != "0"
        and _splice is not None
        and not is_tls_socket(sock)
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and is_pipe(fd)
    )


class PayloadMover:
    """Read frames from `sock`; move binary payloads to `out_fd`, return the rest.

    `prefix` holds bytes already received (after the handshake). With `use_splice`
    the payloads go through `os.splice`, otherwise through a reused buffer.
    `waiting(True)` is called before blocking for the server, `waiting(False)`
    once something came (the keepalive tells a silent server from a slow ssh);
    `on_fallback(error)` when the kernel refused a splice and copying took over.
    """

    def __init__(
        self,
        sock: socket.socket,
        out_fd: int,
        parser: FrameParser,
        prefix: bytes = b"",
        *,
        use_splice: bool,
        waiting: Callable[[bool], None] = lambda flag: None,
        on_fallback: Callable[[OSError], None] = lambda error: None,
    ) -> None:
        self.sock = sock
        self.out_fd = out_fd
        self.parser = parser
        self.use_splice = use_splice and _splice is not None
        self._prefix = memoryview(prefix)
        self._waiting = waiting
        self._on_fallback = on_fallback
        self._buffer = bytearray(MAX_MOVE if not self.use_splice else SMALL_READ)
        self._view = memoryview(self._buffer)
        self._poll = select.poll() if self.use_splice and hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(out_fd, select.POLLOUT)
            # No events asked: only POLLHUP/POLLERR, i.e. the channel was aborted
            # (shutdown) while waiting for room in the pipe.
            self._poll.register(sock.fileno(), 0)

    def move(self) -> int | list[Control] | None:
        """One step: payload bytes moved (an int > 0), control frames, or None at EOF.

        An empty list means progress without anything to report (a header, a text
        frame). Raises SinkFailed when writing to `out_fd` failed, FrameError on
        broken framing, OSError when the socket failed.
        """
        want, binary = self.parser.next_read()
        if binary:
            return self._move_payload(min(want, MAX_MOVE))
        if want == 0:  # pragma: no cover - the parser ends empty frames itself
            return self.parser.feed(b"")  # type: ignore[return-value]
        data = self._take_prefix(want)
        if data is None:
            size = self._recv(min(want, SMALL_READ))
            if not size:
                return None
            data = self._view[:size]
        return [e for e in self.parser.feed(data) if isinstance(e, Control)]

    def _take_prefix(self, limit: int) -> memoryview | None:
        if not self._prefix:
            return None
        data = self._prefix[:limit]
        self._prefix = self._prefix[len(data) :]
        return data

    def _recv(self, size: int) -> int:
        self._waiting(True)
        try:
            return self.sock.recv_into(self._buffer, size)
        finally:
            self._waiting(False)

    def _write_all(self, data: memoryview) -> None:
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        except OSError as exc:
            raise SinkFailed(exc) from None

    def _move_payload(self, want: int) -> int | None:
        data = self._take_prefix(want)
        if data is not None:
            self._write_all(data)
            self.parser.skip(len(data))
            return len(data)
        if self.use_splice:
            moved = self._splice(want)
            if moved is not None:
                if moved:
                    self.parser.skip(moved)
                return moved or None
        size = self._recv(min(want, len(self._buffer)))
        if not size:
            return None
        self._write_all(self._view[:size])
        self.parser.skip(size)
        return size

    def _splice(self, want: int) -> int | None:
        """Splice up to `want` bytes; 0 at EOF, None when splicing is not possible here.

        SPLICE_F_NONBLOCK makes only the pipe side non-blocking (the socket stays
        blocking): a splice that blocks waits for the server, and a full pipe (a slow
        ssh) answers EAGAIN, so the keepalive can tell the two apart without a poll
        before every splice.
        """
        assert _splice is not None
        while True:
            self._waiting(True)
            try:
                return int(_splice(self.sock.fileno(), self.out_fd, want, flags=_NONBLOCK))
            except BlockingIOError:
                pass  # the pipe is full: wait for ssh below, then splice again
            except OSError as exc:
                if exc.errno in _SPLICE_UNSUPPORTED:
                    self.use_splice = False
                    self._buffer = bytearray(MAX_MOVE)
                    self._view = memoryview(self._buffer)
                    self._on_fallback(exc)
                    return None
                if exc.errno == errno.EPIPE:
                    raise SinkFailed(exc) from None
                raise
            finally:
                self._waiting(False)
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        """Block until the pipe has room, its reader is gone or the socket was shut down.

        The next splice then moves bytes, fails with EPIPE, or sees the end.
        """
        if self._poll is not None:
            self._poll.poll()
