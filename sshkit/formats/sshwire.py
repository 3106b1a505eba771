"""RFC 4251 §5 wire encoding: uint32, string, mpint (reader and writer).

Pure: bytes in, bytes out. Every malformed input raises KeyFormatError, never
IndexError/struct.error, so callers can treat any parse failure uniformly.
"""

from __future__ import annotations

import struct

from sshkit.errors import KeyFormatError

_U32 = struct.Struct(">I")


def uint32(value: int) -> bytes:
    """Encode an unsigned 32-bit integer (ValueError when out of range)."""
    if not 0 <= value < 1 << 32:
        raise ValueError("uint32 out of range")
    return _U32.pack(value)


def string(value: bytes) -> bytes:
    """Encode an SSH `string`: uint32 length, then the bytes."""
    return _U32.pack(len(value)) + value


def mpint_bytes(value: int) -> bytes:
    """The two's-complement big-endian body of a non-negative mpint (b"" for 0)."""
    if value < 0:
        raise ValueError("negative mpint")
    if value == 0:
        return b""
    # One extra bit keeps a set top bit from reading as negative (adds the 0x00).
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def mpint(value: int) -> bytes:
    """Encode a non-negative SSH `mpint`."""
    return string(mpint_bytes(value))


class Writer:
    """Accumulates wire fields; `bytes()` returns the encoding."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint32(self, value: int) -> Writer:
        self._parts.append(uint32(value))
        return self

    def string(self, value: bytes) -> Writer:
        self._parts.append(string(value))
        return self

    def mpint(self, value: int) -> Writer:
        self._parts.append(mpint(value))
        return self

    def raw(self, value: bytes) -> Writer:
        self._parts.append(value)
        return self

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads wire fields from `data`; raises KeyFormatError(`what` ...) on truncation."""

    def __init__(self, data: bytes, what: str = "key data") -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _fail(self, why: str) -> KeyFormatError:
        return KeyFormatError(f"{self.what} is corrupt: {why}")

    def raw(self, n: int) -> bytes:
        """Exactly `n` raw bytes."""
        if n < 0 or n > self.remaining:
            raise self._fail("truncated")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def uint32(self) -> int:
        value: int = _U32.unpack(self.raw(4))[0]
        return value

    def byte(self) -> int:
        return self.raw(1)[0]

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def text(self) -> str:
        """A `string` that names something: ASCII only."""
        raw = self.string()
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self._fail("non-ASCII name") from None

    def mpint(self) -> int:
        """A non-negative mpint (negative ones are rejected; extra leading zeros are not)."""
        body = self.string()
        if body and body[0] & 0x80:
            raise self._fail("negative integer")
        return int.from_bytes(body, "big")

    def rest(self) -> bytes:
        return self.raw(self.remaining)

    def expect_end(self) -> None:
        if self.remaining:
            raise self._fail("unexpected trailing data")
