"""Whether the ssh on the other end of the relay's stdio is still there.

OpenSSH forks with its ProxyCommand's pipes still in use: `ssh -f` goes to the
background after authentication, and `ControlPersist` hands the connection to a
forked master while the original process exits. The relay's parent process is
therefore no sign of life; the pipes are. ssh is gone when nobody can read our
stdout any more (the pipe's read end is closed: poll reports POLLERR, or POLLHUP
for a socket) or when stdin ends (the pump handles that as a half-close). A write
into a pipe nobody reads fails too, which the pump treats as the end.

Only when stdout is neither a pipe nor a socket (a terminal, a file, /dev/null)
does nothing tell us, and the parent process is watched instead, as a last resort.
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections.abc import Callable

# What poll() reports, whatever was asked, once the other end is gone.
_HANGUP = (
    getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0) | getattr(select, "POLLNVAL", 0)
)


def _is_pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def hangup_check(fd: int) -> Callable[[], bool] | None:
    """A check that says whether the reader of pipe or socket `fd` went away.

    None when `fd` is not a pipe or a socket, or the platform has no poll()
    (Windows): then nothing can be learnt from it without writing.
    """
    if not _is_pipe_or_socket(fd) or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    # No events asked: only the hang-up conditions, which poll always reports.
    poller.register(fd, 0)

    def hung_up() -> bool:
        try:
            return any(events & _HANGUP for _fd, events in poller.poll(0))
        except OSError:
            return True

    return hung_up


def parent_check() -> Callable[[], bool] | None:
    """A check that says whether the process that started us has exited (POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover - Windows: stdin EOF covers it
        return None
    original = os.getppid()
    return lambda: os.getppid() != original


def peer_gone_check(stdout_fd: int) -> Callable[[], str | None]:
    """A check returning why ssh is considered gone (for the log), or None while it is there.

    The hang-up of `stdout_fd` when it is a pipe or socket; otherwise the parent watch.
    """
    hung_up = hangup_check(stdout_fd)
    if hung_up is not None:
        return lambda: "stdout hung up (ssh is gone)" if hung_up() else None
    parent_gone = parent_check()
    if parent_gone is not None:
        return lambda: "parent process died" if parent_gone() else None
    return lambda: None
