"""The relay's pump: bytes from a source into a message channel, messages back into a sink.

The pump knows nothing about stdio, sockets or websockets. It moves bytes between
three small protocols, one blocking thread per direction. Threads rather than
asyncio because Python's asyncio cannot read a pipe on stdin on Windows
(python/cpython#71019), and because blocking reads of large chunks are as fast as
anything else here.

Rules:

* upstream (source → channel): every chunk the source returns is one `send` (the
  channel may cut it into several messages).
  End of the source (``b""``) is a *half-close*: the channel is told that nothing
  more will be sent (`Channel.close_send`), and the downstream direction keeps
  draining until the channel closes.
* downstream (channel → sink): every message is written to the sink as is. When
  the channel closes, the sink is closed (flushed) and the pump is done.
* a sink that fails (the reader went away) aborts the channel; a source that
  fails counts as its end.
* `Pump.stop` aborts the channel; `recv` then returns and the pump finishes.
"""

from __future__ import annotations

import threading

from sshkit._record import Record

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Protocol, TypeAlias
else:
    # At run time the protocols below are plain base classes (nothing checks them).
    Protocol = object

# What sources return and channels send: `bytes`, or a view of a reused buffer
# that is valid until the next `read()` (the pump sends it before reading again).
Buffer: TypeAlias = bytes | bytearray | memoryview

# Close codes (RFC 6455 §7.4.1) that end a tunnel normally: 1000 when either side
# finished, 1001 when the server's TCP side (the session's sshd) reached EOF.
CLEAN_CLOSE_CODES = frozenset({1000, 1001})


class ByteSource(Protocol):
    """Where upstream bytes come from (stdin, a local TCP connection)."""

    def read(self) -> Buffer:
        """Block until some bytes are available; return an empty buffer at the end.

        The buffer may be reused by the next call.
        """
        ...


class ByteSink(Protocol):
    """Where downstream bytes go (stdout, a local TCP connection)."""

    def write(self, data: Buffer) -> None:
        """Write all of `data`; raise OSError when the reader went away."""
        ...

    def close(self) -> None:
        """Flush and signal the end of the stream to the reader."""
        ...


class CloseInfo(Record):
    """How a channel ended.

    `code` is the close code the peer sent (None when the connection dropped without
    a close frame), `reason` its reason text, `initiated_by_us` whether we sent the
    first close frame.
    """

    _fields = ("code", "reason", "initiated_by_us")
    __slots__ = _fields

    code: int | None
    reason: str
    initiated_by_us: bool

    def __init__(self, code: int | None, reason: str = "", initiated_by_us: bool = False) -> None:
        self._set(code=code, reason=reason, initiated_by_us=initiated_by_us)

    @property
    def clean(self) -> bool:
        """Whether the tunnel ended normally."""
        return self.initiated_by_us or self.code in CLEAN_CLOSE_CODES


class ChannelClosed(Exception):
    """Raised by `Channel.send` once the channel cannot carry more data."""


class Channel(Protocol):
    """A bidirectional message channel (a websocket)."""

    def send(self, data: Buffer) -> None:
        """Send `data` as one or more binary messages (before returning).

        Raise ChannelClosed once closed.
        """
        ...

    def recv(self) -> Buffer | None:
        """Block for the next received bytes; return None once the channel closed.

        The buffer may be reused by the next call (the pump writes it out first).
        """
        ...

    def close_send(self) -> None:
        """Say that nothing more will be sent; keep receiving until the peer closes."""
        ...

    def abort(self) -> None:
        """Close now without waiting for the peer; makes a blocked `recv` return."""
        ...

    @property
    def close_info(self) -> CloseInfo | None:
        """How the channel ended, once `recv` returned None."""
        ...


class PumpResult(Record):
    """What happened during a pump run (no payload, only counts and reasons).

    A mutable `Record`: the pump's threads fill it in.
    """

    _fields = (
        "bytes_up",
        "bytes_down",
        "messages_up",
        "messages_down",
        "source_ended",
        "source_error",
        "sink_error",
        "stopped",
        "close",
    )
    __slots__ = _fields
    _frozen = False

    bytes_up: int
    bytes_down: int
    messages_up: int
    messages_down: int
    source_ended: bool
    source_error: OSError | None
    sink_error: OSError | None
    stopped: bool
    close: CloseInfo | None

    def __init__(
        self,
        bytes_up: int = 0,
        bytes_down: int = 0,
        messages_up: int = 0,
        messages_down: int = 0,
        source_ended: bool = False,
        source_error: OSError | None = None,
        sink_error: OSError | None = None,
        stopped: bool = False,
        close: CloseInfo | None = None,
    ) -> None:
        self._set(
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            messages_up=messages_up,
            messages_down=messages_down,
            source_ended=source_ended,
            source_error=source_error,
            sink_error=sink_error,
            stopped=stopped,
            close=close,
        )


class Pump:
    """Run both directions between `source`/`sink` and `channel` in two threads."""

    def __init__(
        self, source: ByteSource, sink: ByteSink, channel: Channel, *, name: str = "relay"
    ) -> None:
        self.source = source
        self.sink = sink
        self.channel = channel
        self.result = PumpResult()
        self._done = threading.Event()
        self._up = threading.Thread(target=self._upstream, name=f"{name}-up", daemon=True)
        self._down = threading.Thread(target=self._downstream, name=f"{name}-down", daemon=True)

    def start(self) -> None:
        """Start both directions."""
        self._down.start()
        self._up.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the downstream direction finished; return whether it did."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self) -> None:
        """Abort the channel so that both directions finish soon."""
        self.result.stopped = True
        self.channel.abort()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for both threads; return whether both finished.

        The upstream thread may stay blocked in `source.read()` (stdin cannot be
        interrupted portably); it is a daemon thread, so it does not keep the
        process alive.
        """
        self._down.join(timeout)
        self._up.join(timeout)
        return not (self._down.is_alive() or self._up.is_alive())

    def run(self) -> PumpResult:
        """Start, wait until the channel closed, and return the result."""
        self.start()
        self.wait()
        return self.result

    def _finish_downstream(self) -> None:
        """Record how the channel closed, close the sink and wake `wait` (both paths)."""
        result = self.result
        result.close = self.channel.close_info
        try:
            self.sink.close()
        except OSError as exc:
            if result.sink_error is None:
                result.sink_error = exc
        self._done.set()

    def _downstream_to_fd(self, fd: int) -> None:
        """`_downstream` for a channel that writes payloads to the sink's fd itself (splice)."""
        result = self.result
        recv_to_fd = self.channel.recv_to_fd  # type: ignore[attr-defined]
        try:
            while True:
                try:
                    moved = recv_to_fd(fd)
                except OSError as exc:
                    result.sink_error = exc
                    self.channel.abort()
                    break
                if moved is None:
                    break
                result.bytes_down += moved
                result.messages_down += 1
        finally:
            self._finish_downstream()

    def _upstream(self) -> None:
        result = self.result
        while True:
            try:
                data = self.source.read()
            except OSError as exc:
                result.source_error = exc
                data = b""
            if not data:
                result.source_ended = True
                if not self._done.is_set():
                    try:
                        self.channel.close_send()
                    except ChannelClosed:
                        pass
                return
            try:
                self.channel.send(data)
            except ChannelClosed:
                return
            result.bytes_up += len(data)
            result.messages_up += 1

    def _downstream(self) -> None:
        fd = _direct_fd(self.sink, self.channel)
        if fd is not None:
            self._downstream_to_fd(fd)
            return
        result = self.result
        try:
            while True:
                data = self.channel.recv()
                if data is None:
                    break
                try:
                    self.sink.write(data)
                except OSError as exc:
                    result.sink_error = exc
                    self.channel.abort()
                    break
                result.bytes_down += len(data)
                result.messages_down += 1
        finally:
            self._finish_downstream()


def _direct_fd(sink: ByteSink, channel: Channel) -> int | None:
    """The sink's fd when the channel can write payloads into it directly, else None.

    Both sides opt in: a sink with `direct_fd()` (stdout) and a channel with
    `direct_sink_supported(fd)` and `recv_to_fd(fd)` (a websocket on plain TCP,
    into a pipe, on Linux).
    """
    direct_fd = getattr(sink, "direct_fd", None)
    supported = getattr(channel, "direct_sink_supported", None)
    if direct_fd is None or supported is None:
        return None
    fd = direct_fd()
    if fd is None or not supported(fd):
        return None
    return int(fd)
