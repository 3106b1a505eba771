"""The CLI's prompts: one behaviour for a declined question and for an interrupted one.

Answering no raises DeclinedError (exit 17, nothing changed). Ctrl-C or end of
input at a prompt exits 130 like Ctrl-C anywhere else, not typer's `Aborted!`
with exit 1.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from sshkit.errors import DeclinedError, ExitCode


def _interrupted() -> NoReturn:
    sys.stderr.write("\nsshkit: interrupted\n")
    sys.stderr.flush()
    sys.exit(int(ExitCode.INTERRUPTED))


def confirm(question: str, *, default: bool, declined: str) -> None:
    """Ask `question` on stderr; raises DeclinedError(`declined`) when the answer is no."""
    try:
        ok = typer.confirm(question, default=default, err=True)
    except typer.Abort:
        _interrupted()
    if not ok:
        raise DeclinedError(declined)


def ask(label: str, *, hide: bool = False) -> str:
    """Ask for a value on stderr (hidden for secrets); exits 130 on Ctrl-C or end of input."""
    try:
        answer: str = typer.prompt(label, hide_input=hide, err=True)
    except typer.Abort:
        _interrupted()
    return answer
