"""Key conversion use cases: OpenSSH/PEM → PPK, PPK → OpenSSH, and key inspection.

This is the file-touching layer over `sshkit.formats.{keys,ppk,openssh}`: it
reads keys and passphrase files, draws the randomness (Argon2 salt, check
ints, bcrypt salt), refuses to overwrite without `force`, and writes through
`sshkit.localfs.atomic_write` (private keys 0600 from the first byte).
Nothing is written when anything fails.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sshkit.errors import KeyFormatError, LocalFileError, PassphraseError, UsageError
from sshkit.formats import keys as keyfmt
from sshkit.formats.ppk import Argon2Params
from sshkit.localfs import atomic_write, backup_once, check_key_target, read_bytes_if_exists

# PuTTYgen's defaults (Argon2id, 8 MiB, one lane) with a fixed pass count instead
# of PuTTYgen's timing loop: 21 is what PuTTYgen picked for ~100 ms on the
# machine the fixtures were made on, and keeps output reproducible.
DEFAULT_ARGON2 = Argon2Params(flavour="Argon2id", memory_kib=8192, passes=21, parallelism=1)
KDF_NAMES = {"argon2id": "Argon2id", "argon2i": "Argon2i", "argon2d": "Argon2d"}
# bcrypt rounds for encrypted OpenSSH output: OpenSSH's default since 9.4.
OPENSSH_BCRYPT_ROUNDS = 24
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
_KEY_SUFFIXES = {".pem", ".key", ".openssh"}

# Asked for a passphrase with a prompt text; returns the bytes typed.
PassphraseProvider = Callable[[str], bytes]


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    public_path: Path | None
    key_type: str
    bits: int
    fingerprint: str
    comment: str
    encrypted: bool
    format: str
    backups: tuple[Path, ...] = ()


@dataclass(frozen=True)
class KeyInfo:
    path: Path
    key_type: str
    bits: int
    fingerprint: str
    comment: str | None  # None: the file holds none (PEM) or it is encrypted and unknown
    format: str
    encrypted: bool
    private: bool


def read_passphrase_file(path: Path) -> bytes:
    """The passphrase in `path`: its exact bytes minus one final line ending.

    One trailing LF, CRLF or CR is dropped (so `echo secret > f` works, and the
    same file gives the same key in puttygen, which takes the first line
    without its line ending). Any other CR or LF is refused: puttygen would
    silently ignore the extra lines, and a multi-line file is almost certainly
    the wrong file. An empty file is the empty passphrase (= no encryption).

    A file starting with a UTF-16 byte order mark (what `echo secret > f` writes in
    Windows PowerShell 5.1) is decoded and used as UTF-8; a UTF-8 byte order mark
    (PowerShell's `-Encoding utf8`) is dropped. puttygen would keep either mark as
    part of the passphrase (docs/keys.md).
    Raises LocalFileError when unreadable, UsageError when multi-line or not UTF-16.
    """
    data = read_bytes_if_exists(path)
    if data is None:
        raise LocalFileError(f"passphrase file {path} does not exist")
    data = _decode_bom(data, path)
    for ending in (b"\r\n", b"\n", b"\r"):
        if data.endswith(ending):
            data = data[: -len(ending)]
            break
    if b"\n" in data or b"\r" in data:
        raise UsageError(
            f"passphrase file {path} has more than one line",
            hint="a passphrase file holds the passphrase and at most one final newline",
        )
    return data


def _decode_bom(data: bytes, path: Path) -> bytes:
    """`data` as UTF-8 when it starts with a UTF-16 BOM; without a UTF-8 BOM."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"passphrase file {path} is not valid UTF-16") from None
    return data.removeprefix(b"\xef\xbb\xbf")


def default_ppk_path(key_path: Path) -> Path:
    """KEY.ppk (`id_ed25519` → `id_ed25519.ppk`, `server.pem` → `server.ppk`)."""
    if key_path.suffix.lower() in _KEY_SUFFIXES:
        return key_path.with_suffix(".ppk")
    return key_path.with_name(key_path.name + ".ppk")


def default_openssh_path(ppk_path: Path) -> Path:
    """`key.ppk` → `key`; anything else → `NAME.openssh`."""
    if ppk_path.suffix.lower() == ".ppk" and ppk_path.stem:
        return ppk_path.with_suffix("")
    return ppk_path.with_name(ppk_path.name + ".openssh")


def _read_key_file(path: Path) -> bytes:
    data = read_bytes_if_exists(path)
    if data is None:
        raise LocalFileError(f"{path} does not exist")
    if len(data) > 1 << 20:
        raise KeyFormatError(f"{path} is too large to be a key file")
    return data


def _load(
    path: Path,
    passphrase: bytes | None,
    ask: PassphraseProvider | None,
    allow_expensive_kdf: bool = False,
) -> tuple[keyfmt.PrivateKey, bytes | None]:
    """Load a private key, asking for the passphrase only if the file needs one."""
    data = _read_key_file(path)
    load = functools.partial(keyfmt.load_private_key, allow_expensive_kdf=allow_expensive_kdf)
    try:
        try:
            return load(data, passphrase), passphrase
        except PassphraseError as exc:
            if passphrase is not None:
                raise PassphraseError(f"wrong passphrase for {path}") from None
            if ask is None:
                raise PassphraseError(
                    f"{path} is encrypted", hint="give its passphrase with --passphrase-file"
                ) from exc
        typed = ask(f"Passphrase for {path}: ")
        try:
            return load(data, typed), typed
        except PassphraseError:
            raise PassphraseError(f"wrong passphrase for {path}") from None
    except PassphraseError:
        raise
    except KeyFormatError as exc:
        raise type(exc)(f"{path}: {exc.message}", hint=exc.hint) from None


def _check_writable(paths: list[Path], force: bool) -> None:
    for p in paths:
        if p.exists() and not force:
            raise LocalFileError(f"{p} already exists", hint="use --force to overwrite it")
        check_key_target(p, force=force)  # a dangling symlink does not "exist"
        if p.is_dir():
            raise LocalFileError(f"{p} is a directory")
    parent = paths[0].parent
    if not parent.is_dir():
        raise LocalFileError(f"directory {parent} does not exist")


def _output_passphrase(
    input_passphrase: bytes | None, input_encrypted: bool, new_passphrase: bytes | None
) -> bytes | None:
    if new_passphrase is not None:
        return new_passphrase or None
    return input_passphrase if input_encrypted and input_passphrase else None


def convert_to_ppk(
    key_path: Path,
    out: Path | None = None,
    *,
    version: int = 3,
    passphrase: bytes | None = None,
    new_passphrase: bytes | None = None,
    comment: str | None = None,
    argon2: Argon2Params | None = None,
    force: bool = False,
    ask_passphrase: PassphraseProvider | None = None,
    allow_expensive_kdf: bool = False,
) -> ConvertResult:
    """Write `key_path` (OpenSSH, PEM, PKCS#8 or PPK) as a PPK file.

    The output keeps the input's passphrase unless `new_passphrase` is given
    (b"" = no encryption). `argon2` gives flavour/memory/passes/parallelism
    (its salt is ignored: a fresh one is drawn). Keys without a comment get
    puttygen's `imported-openssh-key` unless `comment` is given.
    Raises PassphraseError, KeyFormatError, LocalFileError, UsageError.
    """
    from sshkit.formats import ppk

    if version not in (2, 3):
        raise UsageError("--ppk-version must be 2 or 3")
    out = out or default_ppk_path(key_path)
    _check_writable([out], force)
    if comment is not None and any(c in comment for c in "\r\n\0"):
        raise UsageError("--comment must be one line (it contains a line break)")
    key, used = _load(key_path, passphrase, ask_passphrase, allow_expensive_kdf)
    if comment is not None:
        key = key.with_comment(comment)
    elif not key.comment and key.source_format not in ("openssh-key-v1", "ppk-v2", "ppk-v3"):
        key = key.with_comment(keyfmt.IMPORTED_KEY_COMMENT)
    out_pass = _output_passphrase(used, key.encrypted, new_passphrase)
    params = argon2 or DEFAULT_ARGON2
    salted = Argon2Params(
        params.flavour, params.memory_kib, params.passes, params.parallelism, os.urandom(16)
    )
    data = ppk.encode_ppk(
        key,
        version=version,
        passphrase=out_pass,
        argon2=salted,
        allow_expensive_kdf=allow_expensive_kdf,
    )
    backups = _write(out, data, PRIVATE_MODE, force)
    return ConvertResult(
        path=out,
        public_path=None,
        key_type=key.key_type,
        bits=key.bits,
        fingerprint=key.fingerprint,
        comment=key.comment,
        encrypted=out_pass is not None,
        format=f"ppk-v{version}",
        backups=backups,
    )


def write_ppk(
    key_path: Path,
    out: Path | None = None,
    *,
    version: int = 3,
    passphrase: bytes | None = None,
    new_passphrase: bytes | None = None,
    force: bool = False,
) -> Path:
    """Write KEY.ppk beside `key_path` (or at `out`) and return its path.

    The stable entry point for other commands (setup-vscode). Same rules as
    `convert_to_ppk` with the default Argon2 parameters.
    """
    return convert_to_ppk(
        key_path,
        out,
        version=version,
        passphrase=passphrase,
        new_passphrase=new_passphrase,
        force=force,
    ).path


def convert_from_ppk(
    ppk_path: Path,
    out: Path | None = None,
    *,
    passphrase: bytes | None = None,
    new_passphrase: bytes | None = None,
    force: bool = False,
    ask_passphrase: PassphraseProvider | None = None,
    allow_expensive_kdf: bool = False,
) -> ConvertResult:
    """Write a PPK (or any readable key) as an openssh-key-v1 private key plus OUT.pub.

    The comment is kept. The output keeps the input's passphrase unless
    `new_passphrase` is given (b"" = no encryption); encryption is aes256-ctr
    with bcrypt, as ssh-keygen does. Raises as `convert_to_ppk`.
    """
    from sshkit.formats import openssh

    out = out or default_openssh_path(ppk_path)
    pub_out = out.with_name(out.name + ".pub")
    _check_writable([out, pub_out], force)
    key, used = _load(ppk_path, passphrase, ask_passphrase, allow_expensive_kdf)
    out_pass = _output_passphrase(used, key.encrypted, new_passphrase)
    data = openssh.encode_openssh(
        key,
        check_int=secrets.randbits(32),
        passphrase=out_pass,
        kdf_salt=os.urandom(16),
        kdf_rounds=OPENSSH_BCRYPT_ROUNDS,
    )
    backups = _write(out, data, PRIVATE_MODE, force)
    backups += _write(pub_out, pub_file_line(key).encode(), PUBLIC_MODE, force)
    return ConvertResult(
        path=out,
        public_path=pub_out,
        key_type=key.key_type,
        bits=key.bits,
        fingerprint=key.fingerprint,
        comment=key.comment,
        encrypted=out_pass is not None,
        format="openssh-key-v1",
        backups=backups,
    )


def pub_file_line(key: keyfmt.PrivateKey) -> str:
    """The `.pub` file line, newline included. An empty comment keeps the space
    before it (`type base64 \\n`), as ssh-keygen and puttygen write it."""
    key_type, b64 = key.public_line().split(" ")[:2]
    return f"{key_type} {b64} {key.comment}\n"


def _write(path: Path, data: bytes, mode: int, force: bool) -> tuple[Path, ...]:
    backup = backup_once(path) if force and path.exists() else None
    atomic_write(path, data, mode=mode)
    return (backup,) if backup else ()


def key_info(
    path: Path,
    *,
    ask_passphrase: PassphraseProvider | None = None,
    allow_expensive_kdf: bool = False,
) -> KeyInfo:
    """Type, bits, fingerprint, comment, format and encryption of any key file.

    Needs no passphrase except for encrypted PEM/PKCS#8 without a `.pub`
    beside it. A `.pub` beside an encrypted key supplies the comment when its
    key matches. Raises KeyFormatError, PassphraseError, LocalFileError.
    """
    data = _read_key_file(path)
    info = keyfmt.probe_key_file(data)
    pub = info.public
    comment: str | None = pub.comment if pub is not None else None
    if info.format.startswith("pem") or info.format == "pkcs8":
        comment = None  # these formats hold no comment
    elif info.format == "openssh-key-v1" and info.encrypted:
        comment = None  # encrypted along with the private half
    sibling = _sibling_public(path)
    if pub is None and sibling is not None:
        pub = sibling
    if pub is None:
        key, _ = _load(path, None, ask_passphrase, allow_expensive_kdf)
        pub = key.public_key()
    if info.encrypted and sibling is not None and sibling.blob == pub.blob and not comment:
        comment = sibling.comment or None
    return KeyInfo(
        path=path,
        key_type=pub.key_type,
        bits=pub.bits,
        fingerprint=pub.fingerprint,
        comment=comment,
        format=info.format,
        encrypted=info.encrypted,
        private=info.private,
    )


def _sibling_public(path: Path) -> keyfmt.PublicKey | None:
    if path.name.endswith(".pub"):
        return None
    data = read_bytes_if_exists(path.with_name(path.name + ".pub"))
    if data is None:
        return None
    try:
        return keyfmt.parse_public_file(data)
    except KeyFormatError:
        return None
