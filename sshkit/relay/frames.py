"""RFC 6455 framing for the relay's data path: client frames out, server frames in.

Pure: bytes in, bytes out; the masking key is passed in. The handshake is the
`websockets` library's job (`sshkit.relay.ws`); this module carries the bytes once
the connection is open, because the relay is a hot path:

* outgoing payloads are masked with the library's C `apply_mask` into one new
  buffer, and header and payload go out together with no further copy;
* incoming binary payloads are *streamed*: `FrameParser.feed` returns views into
  the caller's receive buffer as the bytes arrive, so a 256 KiB message is never
  reassembled or copied (SSH is a byte stream; message boundaries mean nothing);
* control frames (ping, pong, close) are returned whole, for the caller to act on;
* text messages are dropped and counted (the manager ignores them too, and they
  must never reach ssh's stdin).

Extensions are never negotiated (the handshake offers none), so any RSV bit is a
protocol error, as is a masked server frame (RFC 6455 §5.1).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import struct
import sys
from collections.abc import Callable

from sshkit._record import Record
from sshkit.relay.pump import Buffer

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import TypeAlias

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
MAX_CONTROL_PAYLOAD = 125


class FrameError(Exception):
    """The server broke RFC 6455 framing; the connection must be failed with 1002."""


def _load_apply_mask() -> Callable[[Buffer, bytes], bytes]:
    """The library's C `apply_mask`, loaded without importing the `websockets` package.

    The package's `__init__` looks its version up with `importlib.metadata` (about
    13 ms of every relay's start-up), so the extension module is loaded from the
    package's directory directly. Falls back to the package's own import, then to
    its pure-Python mask, when the extension is not there.
    """
    loaded = sys.modules.get("websockets.speedups")
    if loaded is not None:
        return loaded.apply_mask  # type: ignore[no-any-return]
    try:
        spec = importlib.util.find_spec("websockets")
    except (ImportError, ValueError):  # pragma: no cover - websockets is a dependency
        spec = None
    for directory in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, "speedups" + suffix)
            if not os.path.isfile(path):
                continue
            loader = importlib.machinery.ExtensionFileLoader("websockets.speedups", path)
            module_spec = importlib.util.spec_from_loader("websockets.speedups", loader)
            if module_spec is None:  # pragma: no cover
                continue
            try:
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
            except ImportError:  # pragma: no cover - built for another interpreter
                continue
            return module.apply_mask  # type: ignore[no-any-return]
    try:  # pragma: no cover - websockets built without its C extension
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover
        from websockets.utils import apply_mask
    return apply_mask  # pragma: no cover


apply_mask: Callable[[Buffer, bytes], bytes] = _load_apply_mask()


def frame_header(opcode: int, length: int, mask: bytes, *, fin: bool = True) -> bytes:
    """The header of a masked client frame carrying `length` payload bytes."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB4s", first, 0x80 | length, mask)
    if length < 1 << 16:
        return struct.pack("!BBH4s", first, 0x80 | 126, length, mask)
    return struct.pack("!BBQ4s", first, 0x80 | 127, length, mask)


def encode_frame(opcode: int, payload: Buffer, mask: bytes) -> tuple[bytes, bytes]:
    """A final client frame as (header, masked payload), to be sent back to back.

    `mask` is the frame's 4-byte masking key; the caller draws it from a strong
    random source for every frame (RFC 6455 §5.3). Raises ValueError on a control
    frame over 125 bytes or a key that is not 4 bytes.
    """
    if len(mask) != 4:
        raise ValueError("a masking key has 4 bytes")
    if opcode in _CONTROL_OPCODES and len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError("a control frame carries at most 125 bytes")
    return frame_header(opcode, len(payload), mask), apply_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: the code, then the UTF-8 reason (cut to fit)."""
    raw = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
    # Cutting may split a character; drop the broken tail rather than send bad UTF-8.
    raw = raw.decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + raw


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """Code and reason of a close frame's payload (None and "" when it has no code).

    Raises FrameError on a one-byte payload or a reason that is not UTF-8.
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError("close frame with a one-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("close reason is not UTF-8") from None
    return code, reason


class Control(Record):
    """A whole control frame from the server."""

    _fields = ("opcode", "payload")
    __slots__ = _fields

    opcode: int
    payload: bytes

    def __init__(self, opcode: int, payload: bytes) -> None:
        self._set(opcode=opcode, payload=payload)


Event: TypeAlias = memoryview | Control


class FrameParser:
    """Incremental parser of server-to-client frames.

    `feed` takes whatever the socket returned and gives back, in order, views of
    binary payload bytes (valid as long as the fed buffer is not overwritten) and
    whole `Control` frames. State carries over between calls: a header, a payload
    or a control frame may be split across any number of reads.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._remaining = 0
        # Opcode of the frame whose payload is being read (None between frames).
        self._opcode: int | None = None
        # Opcode of the fragmented data message in progress (None: no message open).
        self._message: int | None = None
        self._fin = True
        self._control = bytearray()
        self.text_messages = 0
        self.text_bytes = 0

    def feed(self, data: Buffer) -> list[Event]:
        """Parse `data`; return the payload views and control frames it completes.

        Raises FrameError when the server breaks the framing rules.
        """
        view = data if isinstance(data, memoryview) else memoryview(data)
        events: list[Event] = []
        pos = 0
        size = len(view)
        while pos < size or (self._opcode is not None and self._remaining == 0):
            if self._opcode is None:
                pos = self._read_header(view, pos)
                if self._opcode is None:
                    break  # the header is not complete yet
                continue
            take = min(self._remaining, size - pos)
            chunk = view[pos : pos + take]
            pos += take
            self._remaining -= take
            opcode = self._opcode
            if opcode in _CONTROL_OPCODES:
                self._control += chunk
                if self._remaining == 0:
                    events.append(Control(opcode, bytes(self._control)))
                    self._control.clear()
                    self._opcode = None
                continue
            message = self._message if opcode == OP_CONTINUATION else opcode
            if message == OP_BINARY:
                if take:
                    events.append(chunk)
            else:
                self.text_bytes += take
            if self._remaining == 0:
                self._end_data_frame(message)
        return events

    def next_read(self) -> tuple[int, bool]:
        """How many bytes to read next without passing the end of the current part.

        Returns (count, binary): `binary` says that the bytes are binary payload,
        which the caller may move elsewhere (`os.splice`) and account for with
        `skip`; otherwise they are header, control or text bytes for `feed`.
        """
        if self._opcode is None:
            head = self._head
            return (2 if len(head) < 2 else _header_length(head[1])) - len(head), False
        opcode = self._opcode
        message = self._message if opcode == OP_CONTINUATION else opcode
        return self._remaining, message == OP_BINARY and opcode not in _CONTROL_OPCODES

    def skip(self, count: int) -> None:
        """Account for `count` bytes of binary payload that the caller moved itself.

        Raises ValueError when the parser is not inside a binary payload that long.
        """
        count_wanted, binary = self.next_read()
        if not binary or count > count_wanted:
            raise ValueError("skip() outside a binary payload or past its end")
        self._remaining -= count
        if self._remaining == 0:
            opcode = self._opcode
            self._end_data_frame(self._message if opcode == OP_CONTINUATION else opcode)

    def _end_data_frame(self, message: int | None) -> None:
        self._opcode = None
        if self._fin:
            if message == OP_TEXT:
                self.text_messages += 1
            self._message = None
        else:
            self._message = message

    def _read_header(self, view: memoryview, pos: int) -> int:
        """Consume header bytes from `view[pos:]`; set the frame state once complete."""
        head = self._head
        need = 2
        if len(head) >= 2:
            need = _header_length(head[1])
        while len(head) < need and pos < len(view):
            take = min(need - len(head), len(view) - pos)
            head += view[pos : pos + take]
            pos += take
            if len(head) == 2:
                need = _header_length(head[1])
        if len(head) < need:
            return pos
        first, second = head[0], head[1]
        if first & 0x70:
            raise FrameError("reserved bits set (no extension was negotiated)")
        if second & 0x80:
            raise FrameError("masked frame from the server")
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack_from("!H", head, 2)
        elif length == 127:
            (length,) = struct.unpack_from("!Q", head, 2)
            if length >> 63:
                raise FrameError("frame length over 2**63")
        if opcode in _CONTROL_OPCODES:
            if not fin:
                raise FrameError("fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise FrameError("control frame over 125 bytes")
        elif opcode in _DATA_OPCODES:
            if opcode == OP_CONTINUATION and self._message is None:
                raise FrameError("continuation frame outside a message")
            if opcode != OP_CONTINUATION and self._message is not None:
                raise FrameError("new message before the last one ended")
            self._fin = fin
        else:
            raise FrameError(f"unknown opcode {opcode:#x}")
        head.clear()
        self._opcode = opcode
        self._remaining = length
        return pos


def _header_length(second: int) -> int:
    """Length of a header whose second byte is `second`."""
    length = second & 0x7F
    extra = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extra + (4 if second & 0x80 else 0)
