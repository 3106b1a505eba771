"""The single boundary where sshkit errors become a message and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

from sshkit.errors import ExitCode, SshkitError, printable

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NoReturn

_debug = False


def set_debug(value: bool) -> None:
    global _debug
    _debug = value


def report(exc: SshkitError) -> int:
    """Print `exc` as one line on stderr (plus an optional hint); return its exit code."""
    # Messages may quote a server's words: control characters are escaped, never printed.
    message = printable(" ".join(str(exc.message).split()))
    sys.stderr.write(f"sshkit: error: {message}\n")
    if exc.hint:
        sys.stderr.write(f"sshkit: hint: {printable(' '.join(exc.hint.split()))}\n")
    sys.stderr.flush()
    return int(exc.exit_code)


def run_guarded(func: Callable[[], object]) -> NoReturn:
    """Run the CLI, translating SshkitError and Ctrl-C to exit codes.

    With --debug the traceback comes first, then the same message, hint and exit
    code as without it: scripts see one contract either way.
    """
    try:
        func()
    except SshkitError as exc:
        if _debug:
            import traceback

            traceback.print_exc()
        sys.exit(report(exc))
    except KeyboardInterrupt:
        sys.stderr.write("sshkit: interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(0)
