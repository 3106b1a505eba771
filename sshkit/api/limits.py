"""Bounds on what a server can make an HTTP request cost: time and memory.

`requests`' timeout is per socket read, so a server sending one byte every few
seconds keeps a request alive forever. Here every request gets a wall-clock
deadline: a timer shuts down the sockets the request uses when it expires, which
ends any blocked read at once. Answers that are read into memory (JSON, error
bodies) are streamed and refused past a size cap.

Limits (docs/configuration.md):

* `SSHKIT_HTTP_DEADLINE` (seconds, default 120): the whole request, from connect to
  the last byte of the answer.
* `MAX_JSON_BODY` (8 MiB): the largest JSON or error answer read; session
  downloads keep their own 1 MiB cap.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sshkit.errors import ConfigError

DEFAULT_DEADLINE = 120.0
DEADLINE_ENV = "SSHKIT_HTTP_DEADLINE"
MAX_JSON_BODY = 8 * 1024 * 1024
_CHUNK = 64 * 1024


class BodyTooLargeError(Exception):
    """An answer went past its size cap (the caller turns it into an sshkit error)."""


def deadline_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The per-request deadline: `SSHKIT_HTTP_DEADLINE` or 120 s.

    Raises ConfigError for a value that is not a positive number.
    """
    env = os.environ if environ is None else environ
    raw = env.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{DEADLINE_ENV} must be a positive number of seconds, not {raw!r}")
    return value


class _Sockets:
    """The live sockets of one adapter, so that a deadline can cut them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def add(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._lock:
                self._socks.add(sock)

    def shutdown_all(self) -> None:
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _pool_classes(sockets: _Sockets) -> dict[str, type[HTTPConnectionPool]]:
    class Conn(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class TlsConn(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = TlsConn

    return {"http": Pool, "https": TlsPool}


class AbortableAdapter(HTTPAdapter):
    """An HTTPAdapter whose in-flight requests `abort()` ends (from any thread)."""

    def __init__(self) -> None:
        self.sockets = _Sockets()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.sockets)

    def abort(self) -> None:
        self.sockets.shutdown_all()


def mount_abortable(session: requests.Session) -> AbortableAdapter:
    """Mount an AbortableAdapter for http:// and https:// on `session` and return it."""
    adapter = AbortableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter


class Deadline:
    """A wall-clock limit on one request: `with Deadline(s, adapter): ...`.

    When it expires the adapter's sockets are shut down, so a read blocked on a
    slow server fails at once; `expired` then tells the caller why. Without an
    adapter (an injected transport) only `check()` enforces it, between chunks.
    """

    def __init__(self, seconds: float, adapter: AbortableAdapter | None) -> None:
        self.seconds = seconds
        self._adapter = adapter
        self._end = time.monotonic() + seconds
        self._fired = threading.Event()
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self._fired.set()
        if self._adapter is not None:
            self._adapter.abort()

    @property
    def expired(self) -> bool:
        return self._fired.is_set() or time.monotonic() >= self._end

    def __enter__(self) -> Deadline:
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()


def read_limited(
    resp: requests.Response, limit: int | None, deadline: Deadline | None = None
) -> bytes:
    """Read a streamed response's whole body, refusing more than `limit` bytes (None: no cap).

    A declared Content-Length above the limit is refused before reading. The
    body is kept on the response (`resp.content`/`resp.json()` work after).
    Raises BodyTooLargeError; TimeoutError when `deadline` has expired.
    """
    declared = resp.headers.get("Content-Length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        resp.close()
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(_CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            resp.close()
            raise BodyTooLargeError(limit)
        if deadline is not None and deadline.expired:
            resp.close()
            raise TimeoutError
        chunks.append(chunk)
    body = b"".join(chunks)
    resp._content = body  # what `resp.content` returns from now on
    resp._content_consumed = True  # type: ignore[attr-defined]
    return body


def describe_size(limit: int) -> str:
    """`limit` bytes for a message, rounded: "8 MiB", "64 KiB"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size:
            return f"{limit / size:.0f} {unit}"
    return f"{limit} bytes"
