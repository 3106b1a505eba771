"""The `sshkit` command line: thin typer commands over the service layer.

Command modules register themselves on the shared app (`sshkit.cli._app`) when
imported. Heavy libraries (cryptography, requests, paramiko, websockets) are
imported inside command bodies, never at module level, so `sshkit --help` starts
fast. Importing this package does not import typer: `sshkit relay` runs on every
ssh connection and takes a typer-free fast path (`sshkit.cli._relay_cmd`).
"""

from __future__ import annotations

import sys

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from sshkit.cli._app import app as app


def __getattr__(name: str) -> Any:
    # `from sshkit.cli import app` keeps working without importing typer eagerly.
    if name == "app":
        from sshkit.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The order `sshkit --help` lists the commands in: the way a user meets them.
# Modules not named here follow in alphabetical order.
_HELP_ORDER = (
    "account",
    "vscode",
    "oneshot",
    "relay",
    "fetch",
    "keys",
    "authorized_keys",
    "export",
    "hosts",
    "doctor",
    "config",
)


def _register_commands() -> None:
    """Import every public module of this package: each adds its commands to `app`."""
    import importlib
    import pkgutil

    names = sorted(i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_"))
    rank = {name: i for i, name in enumerate(_HELP_ORDER)}
    for name in sorted(names, key=lambda n: (rank.get(n, len(rank)), n)):
        importlib.import_module(f"{__name__}.{name}")


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:2] == ["relay"]:
        from sshkit.cli._relay_cmd import fast_main

        fast_main(sys.argv[2:])  # exits, unless typer should show the help
    from sshkit.cli._app import command
    from sshkit.cli._errors import run_guarded

    _register_commands()
    run_guarded(command())
