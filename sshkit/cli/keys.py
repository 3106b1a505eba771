"""`to-ppk`, `from-ppk`, `key-info`: PuTTY key conversion and key inspection."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sshkit.cli._app import app
from sshkit.errors import KeyFormatError, UsageError

if TYPE_CHECKING:
    from sshkit.services.keyconv import PassphraseProvider


def _prompt(question: str) -> bytes:
    import getpass

    return getpass.getpass(question).encode("utf-8")


def _asker() -> PassphraseProvider | None:
    """Prompt (without echo) only when a person can answer."""
    return _prompt if sys.stdin.isatty() else None


def _passphrases(
    passphrase_file: Path | None, new_passphrase_file: Path | None, no_passphrase: bool
) -> tuple[bytes | None, bytes | None]:
    from sshkit.services.keyconv import read_passphrase_file

    if new_passphrase_file is not None and no_passphrase:
        raise UsageError("--new-passphrase-file and --no-passphrase exclude each other")
    old = read_passphrase_file(passphrase_file) if passphrase_file else None
    new = read_passphrase_file(new_passphrase_file) if new_passphrase_file else None
    return old, (b"" if no_passphrase else new)


def _display(text: str) -> str:
    # Comments are raw bytes on disk; show undecodable ones as U+FFFD.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_PassFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File holding the input key's passphrase."),
]
_NewPassFile = Annotated[
    Path | None,
    typer.Option(
        "--new-passphrase-file", help="Encrypt the output with the passphrase in this file."
    ),
]
_NoPass = Annotated[
    bool, typer.Option("--no-passphrase", help="Write the output without a passphrase.")
]
_Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
_Expensive = Annotated[
    bool,
    typer.Option(
        "--allow-expensive-kdf",
        help="Accept Argon2 beyond 1 GiB of memory or 16 GiB·passes (up to 4 GiB, 10000 passes).",
    ),
]


@app.command("to-ppk")
def to_ppk(
    key: Annotated[Path, typer.Argument(help="OpenSSH, PEM or PKCS#8 private key.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Output file (default: KEY.ppk).")
    ] = None,
    ppk_version: Annotated[int, typer.Option("--ppk-version", help="PPK version: 3 or 2.")] = 3,
    passphrase_file: _PassFile = None,
    new_passphrase_file: _NewPassFile = None,
    no_passphrase: _NoPass = False,
    comment: Annotated[str | None, typer.Option("--comment", help="Key comment.")] = None,
    kdf: Annotated[
        str, typer.Option("--kdf", help="argon2id, argon2i or argon2d (PPK v3 only).")
    ] = "argon2id",
    argon2_memory: Annotated[
        int,
        typer.Option("--argon2-memory", help="Argon2 memory in KiB (PPK v3 with a passphrase)."),
    ] = 8192,
    argon2_passes: Annotated[int, typer.Option("--argon2-passes", help="Argon2 passes.")] = 21,
    argon2_parallelism: Annotated[
        int, typer.Option("--argon2-parallelism", help="Argon2 lanes.")
    ] = 1,
    force: _Force = False,
    allow_expensive_kdf: _Expensive = False,
) -> None:
    """Convert a private key to PuTTY's PPK format (for PuTTY, WinSCP, FileZilla)."""
    from sshkit.formats.ppk import Argon2Params
    from sshkit.services import keyconv

    if kdf.lower() not in keyconv.KDF_NAMES:
        raise UsageError("--kdf must be argon2id, argon2i or argon2d")
    if ppk_version not in (2, 3):
        raise UsageError("--ppk-version must be 2 or 3")
    old, new = _passphrases(passphrase_file, new_passphrase_file, no_passphrase)
    argon2 = Argon2Params(
        keyconv.KDF_NAMES[kdf.lower()], argon2_memory, argon2_passes, argon2_parallelism
    )
    try:
        # The real salt is drawn by the service.
        replace(argon2, salt=bytes(16)).check(allow_expensive=allow_expensive_kdf)
    except KeyFormatError as exc:
        raise UsageError(exc.message) from None
    result = keyconv.convert_to_ppk(
        key,
        output,
        version=ppk_version,
        passphrase=old,
        new_passphrase=new,
        comment=comment,
        argon2=argon2,
        force=force,
        ask_passphrase=_asker(),
        allow_expensive_kdf=allow_expensive_kdf,
    )
    state = "encrypted" if result.encrypted else "not encrypted"
    typer.echo(f"Wrote {result.path} (PPK v{ppk_version}, {state}) {result.fingerprint}")


@app.command("from-ppk")
def from_ppk(
    ppk: Annotated[Path, typer.Argument(help="PuTTY .ppk private key.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output file (default: PPK without .ppk)."),
    ] = None,
    passphrase_file: _PassFile = None,
    new_passphrase_file: _NewPassFile = None,
    no_passphrase: _NoPass = False,
    force: _Force = False,
    allow_expensive_kdf: _Expensive = False,
) -> None:
    """Convert a PuTTY .ppk key to an OpenSSH private key (and OUT.pub)."""
    from sshkit.services import keyconv

    old, new = _passphrases(passphrase_file, new_passphrase_file, no_passphrase)
    result = keyconv.convert_from_ppk(
        ppk,
        output,
        passphrase=old,
        new_passphrase=new,
        force=force,
        ask_passphrase=_asker(),
        allow_expensive_kdf=allow_expensive_kdf,
    )
    state = "encrypted" if result.encrypted else "not encrypted"
    typer.echo(f"Wrote {result.path} and {result.public_path} ({state}) {result.fingerprint}")


@app.command("key-info")
def key_info(
    file: Annotated[Path, typer.Argument(help="Private key (any format), .ppk or .pub file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help="Only needed for encrypted PEM keys without a .pub file."
        ),
    ] = None,
    allow_expensive_kdf: _Expensive = False,
) -> None:
    """Show a key's type, bits, SHA256 fingerprint, comment, format and encryption."""
    from sshkit.services import keyconv

    ask = _asker()
    if passphrase_file is not None:
        fixed = keyconv.read_passphrase_file(passphrase_file)
        ask = lambda _question: fixed  # noqa: E731
    info = keyconv.key_info(file, ask_passphrase=ask, allow_expensive_kdf=allow_expensive_kdf)
    comment = None if info.comment is None else _display(info.comment)
    fields = {
        "path": str(info.path),
        "type": info.key_type,
        "bits": info.bits,
        "fingerprint": info.fingerprint,
        "comment": comment,
        "format": info.format,
        "encrypted": info.encrypted,
        "private": info.private,
    }
    if as_json:
        typer.echo(json.dumps(fields, indent=2, ensure_ascii=False))
        return
    rows = [
        ("type", info.key_type),
        ("bits", str(info.bits)),
        ("fingerprint", info.fingerprint),
        ("comment", "(none)" if comment is None else comment),
        ("format", info.format),
        ("encrypted", "yes" if info.encrypted else "no"),
    ]
    for name, value in rows:
        typer.echo(f"{name + ':':<13}{value}")
