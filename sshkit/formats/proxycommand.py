"""Quoting of the ProxyCommand line for the three programs that run it.

One ProxyCommand string is read by three different parsers (spec §6.6, §8.3, trap 19):

* OpenSSH on Unix runs ``$SHELL -c "exec <command>"``: POSIX shell rules.
* Win32-OpenSSH has no shell: it builds a ``CreateProcess`` command line, where only double
  quotes group and backslashes are literal.
* paramiko's ``ProxyCommand`` runs ``shlex.split`` (POSIX mode) and ``Popen`` without a shell.

And before any of them, ssh expands %-tokens, so a literal ``%`` must be written ``%%``.

The strategy: arguments sshkit generates (``relay``, ``--suffix``, ``.bai``, ``%h``) are plain
words that need no quoting anywhere; only the executable path can hold spaces or odd characters.

* POSIX: a plain path stays bare; a path with spaces but no ``" $ ` \\`` is double-quoted (read the
  same by sh, shlex and CreateProcess); anything else is single-quoted (sh and shlex agree).
* Windows: the path is always double-quoted and written with forward slashes, which
  CreateProcess accepts, Git-Bash's sh does not mangle and shlex does not eat.

Pure functions, unit-tested in tests/test_ssh_config_proxycommand.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

from sshkit.errors import SshConfigError

Platform = Literal["posix", "windows"]

TOKENS = frozenset({"%h", "%n", "%p", "%r"})
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./:@%+=,-]+$")
_SH_DOUBLE_UNSAFE = set('"$`\\!')


def _check(arg: str) -> None:
    if not arg or any(c in arg for c in "\r\n\0"):
        raise SshConfigError("a ProxyCommand argument is empty or contains a line break")


def quote_posix(arg: str) -> str:
    """Quote one word for ``sh -c`` such that ``shlex.split`` reads it the same way."""
    _check(arg)
    if _PLAIN_RE.match(arg):
        return arg
    if not (set(arg) & _SH_DOUBLE_UNSAFE):
        return f'"{arg}"'
    return "'" + arg.replace("'", "'\\''") + "'"


def quote_windows(arg: str, *, force: bool = False) -> str:
    """Quote one word for a CreateProcess command line (and for shlex, which paramiko uses).

    Backslashes become forward slashes, so neither shlex nor a Git-Bash shell can eat them.
    Raises SshConfigError for a double quote, which Windows paths cannot contain.
    """
    _check(arg)
    if '"' in arg:
        raise SshConfigError(f"cannot put a double quote in a Windows ProxyCommand: {arg!r}")
    arg = arg.replace("\\", "/")
    if not force and _PLAIN_RE.match(arg):
        return arg
    return f'"{arg}"'


def _escape_percent(word: str) -> str:
    return word if word in TOKENS else word.replace("%", "%%")


def proxycommand_line(argv: Sequence[str], platform: Platform) -> str:
    """The ssh_config ProxyCommand value running ``argv``.

    ``argv[0]`` is the executable (absolute path); the other words are passed as they are,
    except that the exact words ``%h %n %p %r`` stay ssh tokens. Any other ``%`` is doubled.
    Raises SshConfigError for words that cannot be written (line breaks, '"' on Windows).
    """
    if not argv:
        raise SshConfigError("empty ProxyCommand")
    words: list[str] = []
    for i, word in enumerate(argv):
        if platform == "windows":
            # The executable is always quoted: CreateProcess then never guesses where it ends.
            quoted = quote_windows(word, force=(i == 0)) if i == 0 else quote_posix(word)
            if i > 0 and quoted != word:
                raise SshConfigError(f"ProxyCommand argument needs no quoting: {word!r}")
        else:
            quoted = quote_posix(word)
        words.append(_escape_percent(quoted))
    return " ".join(words)


def expand_tokens(line: str, values: Mapping[str, str]) -> str:
    """Expand ssh %-tokens in ``line`` (``values`` maps 'h' → hostname, ...); '%%' → '%'.

    Raises SshConfigError for an unknown token.
    """
    out: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "%" and i + 1 < len(line):
            t = line[i + 1]
            if t == "%":
                out.append("%")
            elif t in values:
                out.append(values[t])
            else:
                raise SshConfigError(f"unknown token %{t} in ProxyCommand")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def paramiko_command(argv: Sequence[str], values: Mapping[str, str]) -> str:
    """The string for ``paramiko.ProxyCommand``: tokens expanded, then shell-quoted for shlex.

    paramiko splits it with ``shlex.split`` (POSIX) and runs it without a shell, so
    ``shlex.join`` of the expanded argv is the exact inverse on every platform.
    """
    expanded = [
        expand_tokens(w, values) if w in TOKENS else w for w in argv
    ]  # only whole-word tokens are tokens here; paramiko knows no '%%'
    return shlex.join(expanded)
