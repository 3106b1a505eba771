"""A first-byte watchdog: a tunnel that opens but never speaks must not hang ssh.

In session mode the webserver swallows the manager's close codes and answers our pings
itself (spec §14): a refused sshd, or a session that ended, looks like an open tunnel
that stays silent forever. sshd always speaks first (its version banner), so a tunnel
to sshd that delivers nothing within the timeout is dead. `FirstByteWatch` wraps the
channel; when the time runs out it aborts the channel and reports the channel as lost,
so that the relay ends with an error (stdout is not closed before the error line).
"""

from __future__ import annotations

import threading

from sshkit.relay.pump import Buffer, Channel, CloseInfo

SILENT_REASON = "nothing received from the server"


class FirstByteWatch:
    """A `Channel` that aborts `inner` when no byte arrived within `timeout` s of `start`.

    `silent` tells afterwards whether the watchdog fired.
    """

    def __init__(self, inner: Channel, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._first = threading.Event()
        self._done = threading.Event()
        self.silent = False
        self._thread = threading.Thread(target=self._watch, name="first-byte", daemon=True)

    def start(self) -> FirstByteWatch:
        """Start the clock (call when the tunnel has just opened). Returns self."""
        self._thread.start()
        return self

    def _watch(self) -> None:
        if self._first.wait(self._timeout) or self._done.is_set():
            return
        self.silent = True
        self._inner.abort()

    def send(self, data: Buffer) -> None:
        self._inner.send(data)

    def recv(self) -> Buffer | None:
        data = self._inner.recv()
        if data is None:
            self._done.set()
            self._first.set()
        elif len(data):
            self._first.set()
        return data

    def direct_sink_supported(self, fd: int) -> bool:
        """Whether the inner channel can move payloads to `fd` itself (splice).

        Passed through so that watching the first byte never costs the download path.
        """
        supported = getattr(self._inner, "direct_sink_supported", None)
        return bool(supported is not None and supported(fd))

    def recv_to_fd(self, fd: int) -> int | None:
        """The inner channel's `recv_to_fd`, noting the first byte. Raises what it raises."""
        moved: int | None = self._inner.recv_to_fd(fd)  # type: ignore[attr-defined]
        if moved is None:
            self._done.set()
            self._first.set()
        elif moved:
            self._first.set()
        return moved

    def close_send(self) -> None:
        self._inner.close_send()

    def abort(self) -> None:
        self._done.set()
        self._first.set()
        self._inner.abort()

    @property
    def close_info(self) -> CloseInfo | None:
        if self.silent:
            # Not "closed by us": the relay must fail, not end quietly.
            return CloseInfo(None, SILENT_REASON)
        return self._inner.close_info
