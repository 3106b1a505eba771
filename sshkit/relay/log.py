"""The relay's opt-in log (`--log-file` or SSHKIT_LOG).

ssh swallows most of what a ProxyCommand says; a log file is how a failing relay is
diagnosed. It records events and byte counts, never payload, headers, cookies,
keys or the query string of the tunnel URL.
"""

from __future__ import annotations

import os
import sys
import time

from sshkit.errors import printable


class RelayLog:
    """Append timestamped lines to a file; every write is flushed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._t0 = time.monotonic()
        # O_APPEND so concurrent relays (VS Code opens several) interleave whole lines.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        elapsed = time.monotonic() - self._t0
        line = f"{stamp} [{os.getpid()}] +{elapsed:.3f}s {printable(message)}\n"
        try:
            self._file.write(line)
        except (OSError, ValueError):
            pass

    def write_usage(self) -> None:
        """Log this process's CPU time and peak RSS (what `bench/relay` reads)."""
        try:
            import resource
        except ImportError:  # pragma: no cover - Windows
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # ru_maxrss is KiB on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        self.write(
            f"usage: cpu user {usage.ru_utime:.3f} s, sys {usage.ru_stime:.3f} s, "
            f"peak rss {usage.ru_maxrss * scale} B"
        )

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


def open_log(path: str | None) -> RelayLog | None:
    """Open the log at `path` (None: no log). A log that cannot be opened is skipped."""
    if not path:
        return None
    try:
        return RelayLog(os.path.expanduser(path))
    except OSError:
        return None
