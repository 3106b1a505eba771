"""PuTTY private key files (PPK) versions 2 and 3: reader and byte-exact writer.

Implements spec §1 (`key-and-config-formats.md`): the text layer as PuTTY's
`sshpubk.c` reads it, SHA-1-derived padding, the v2 SHA-1 KDF, the v3 Argon2
KDF with an 80-byte tag (AES key ‖ IV ‖ MAC key), and the MAC over the five
strings. Output equals puttygen 0.78 byte for byte given the same comment,
passphrase, Argon2 parameters and salt.

Pure: the Argon2 salt is passed in by the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sshkit.errors import KeyFormatError, PassphraseError
from sshkit.formats import sshwire
from sshkit.formats.keys import (
    DSA,
    ECDSA_CURVES,
    EDDSA_SIZES,
    KEY_TYPES,
    RSA,
    DsaParams,
    EcdsaParams,
    EddsaParams,
    KeyParams,
    PrivateKey,
    RsaParams,
    comment_from_bytes,
    comment_to_bytes,
    validate_params,
)
from sshkit.formats.sshwire import Reader

if TYPE_CHECKING:
    from hashlib import _Hash

WHAT = "PPK file"
ENCRYPTIONS = ("none", "aes256-cbc")
ARGON2_FLAVOURS = ("Argon2id", "Argon2i", "Argon2d")
MAX_LINES = 5460  # PuTTY: a blob of at most 256 KiB, i.e. < 262144/48 lines
V2_MAC_KEY_PREFIX = b"putty-private-key-file-mac-key"

# Limits on what a file may ask Argon2 to do. PuTTY has none; without them a
# corrupt or hostile file could demand terabytes of memory or days of CPU.
MAX_ARGON2_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB
MAX_ARGON2_PASSES = 10_000
# The bounds without --allow-expensive-kdf: a file's Argon2 parameters are chosen by
# whoever wrote it, and 4 GiB × 10,000 passes runs for hours. puttygen's defaults
# (8 MiB, 21 passes: about 0.2 GiB·passes) are far below.
DEFAULT_MAX_ARGON2_MEMORY_KIB = 1024 * 1024  # 1 GiB
DEFAULT_MAX_ARGON2_COST = 16 * 1024 * 1024  # memory (KiB) × passes: 16 GiB·passes
MAX_ARGON2_PARALLELISM = 255


@dataclass(frozen=True)
class Argon2Params:
    """PPK v3 key derivation parameters (flavour as in the file: Argon2id/i/d)."""

    flavour: str = "Argon2id"
    memory_kib: int = 8192
    passes: int = 21
    parallelism: int = 1
    salt: bytes = b""

    def check(self, *, allow_expensive: bool = False) -> None:
        """KeyFormatError if the parameters are unusable or beyond sshkit's limits.

        Without `allow_expensive`, memory is at most 1 GiB and memory × passes at
        most 16 GiB·passes; with it, 4 GiB and 10,000 passes.
        """
        if self.flavour not in ARGON2_FLAVOURS:
            raise KeyFormatError(f"unknown Argon2 flavour {self.flavour!r}")
        if not 1 <= self.parallelism <= MAX_ARGON2_PARALLELISM:
            raise KeyFormatError(f"Argon2 parallelism {self.parallelism} is out of range")
        if not 8 * self.parallelism <= self.memory_kib <= MAX_ARGON2_MEMORY_KIB:
            raise KeyFormatError(
                f"Argon2 memory {self.memory_kib} KiB is out of range "
                f"(8 × parallelism to {MAX_ARGON2_MEMORY_KIB})"
            )
        if not 1 <= self.passes <= MAX_ARGON2_PASSES:
            raise KeyFormatError(f"Argon2 passes {self.passes} is out of range")
        if len(self.salt) < 8:
            raise KeyFormatError("Argon2 salts shorter than 8 bytes are not supported")
        cost = self.memory_kib * self.passes
        if not allow_expensive and (
            self.memory_kib > DEFAULT_MAX_ARGON2_MEMORY_KIB or cost > DEFAULT_MAX_ARGON2_COST
        ):
            raise KeyFormatError(
                f"Argon2 with {self.memory_kib} KiB × {self.passes} passes is beyond sshkit's"
                " limits (1 GiB of memory, 16 GiB·passes)",
                hint="pass --allow-expensive-kdf if you trust this key file",
            )


def argon2_derive(
    params: Argon2Params, passphrase: bytes, length: int = 80, *, allow_expensive: bool = False
) -> bytes:
    """Argon2 v1.3 with empty secret and associated data (what PuTTY computes).

    Uses cryptography's Argon2, else argon2-cffi (the `argon2` extra). Runs in a
    worker thread (the libraries release the GIL) so that Ctrl-C ends
    the wait at once: the main thread stays interruptible and the worker is abandoned.
    Raises KeyFormatError for parameters beyond the limits (`Argon2Params.check`),
    or when neither library has the flavour.
    """
    params.check(allow_expensive=allow_expensive)
    result: list[bytes] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(_argon2_raw(params, passphrase, length))
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="argon2", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if failure:
        raise failure[0]
    return result[0]


def _argon2_raw(params: Argon2Params, passphrase: bytes, length: int) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        from cryptography.hazmat.primitives.kdf import argon2 as c_argon2

        cls = {
            "Argon2id": c_argon2.Argon2id,
            "Argon2i": getattr(c_argon2, "Argon2i", None),
            "Argon2d": getattr(c_argon2, "Argon2d", None),
        }[params.flavour]
        if cls is None:
            raise UnsupportedAlgorithm(params.flavour)
        kdf = cls(
            salt=params.salt,
            length=length,
            iterations=params.passes,
            lanes=params.parallelism,
            memory_cost=params.memory_kib,
        )
        return bytes(kdf.derive(passphrase))
    except (UnsupportedAlgorithm, ImportError):
        # cryptography < 47 (or linked to OpenSSL < 3.2): use the reference implementation.
        try:
            from argon2.low_level import Type, hash_secret_raw
        except ImportError:
            raise KeyFormatError(
                f"this cryptography build has no {params.flavour} (PPK v3 keys need it)",
                hint="install sshkit's argon2 extra: pip install 'sshkit[argon2]'",
            ) from None

        kind = {"Argon2id": Type.ID, "Argon2i": Type.I, "Argon2d": Type.D}[params.flavour]
        return bytes(
            hash_secret_raw(
                secret=passphrase,
                salt=params.salt,
                time_cost=params.passes,
                memory_cost=params.memory_kib,
                parallelism=params.parallelism,
                hash_len=length,
                type=kind,
                version=19,
            )
        )


@dataclass(frozen=True)
class PpkFile:
    """The decoded text layer of a PPK file (private blob still encrypted)."""

    version: int
    algorithm: str
    encryption: str
    comment: bytes
    public_blob: bytes
    argon2: Argon2Params | None
    private_data: bytes
    mac: str

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"


class _Text:
    """PuTTY's line reader: a line ends at CR or LF, and one more CR/LF is swallowed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def line(self, expecting: str) -> bytes:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise KeyFormatError(f"{WHAT} is truncated (expected {expecting})")
        end = pos
        while end < len(data) and data[end] not in b"\r\n":
            end += 1
        line = data[pos:end]
        if end < len(data):
            end += 1
            if end < len(data) and data[end] in b"\r\n":
                end += 1
        self.pos = end
        return line

    def header(self, name: str) -> bytes:
        line = self.line(f"the {name} header")
        prefix = name.encode() + b": "
        if not line.startswith(prefix):
            raise KeyFormatError(f"{WHAT} format error: expected the {name!r} header")
        return line[len(prefix) :]

    def number(self, name: str, limit: int) -> int:
        value = self.header(name)
        if not re.fullmatch(rb"[0-9]{1,10}", value) or int(value) > limit:
            raise KeyFormatError(f"{WHAT} format error: bad {name} value")
        return int(value)

    def blob(self, name: str) -> bytes:
        count = self.number(name, MAX_LINES)
        parts: list[bytes] = []
        for _ in range(count):
            line = self.line(f"{name} data")
            if not line or len(line) > 64 or len(line) % 4:
                raise KeyFormatError(
                    f"{WHAT} format error: base64 lines must be at most 64 characters "
                    "and a multiple of 4"
                )
            try:
                parts.append(base64.b64decode(line, validate=True))
            except (binascii.Error, ValueError):
                raise KeyFormatError(f"{WHAT} format error: bad base64") from None
        return b"".join(parts)


def parse_ppk(data: bytes) -> PpkFile:
    """Parse the text layer (no passphrase needed, MAC not checked).

    Raises KeyFormatError for anything PuTTY would reject as a format error,
    and for versions/algorithms sshkit does not support.
    """
    t = _Text(data)
    first = t.line("the PuTTY-User-Key-File header")
    m = re.fullmatch(rb"PuTTY-User-Key-File-([^:]*): (.*)", first, re.DOTALL)
    if m is None:
        raise KeyFormatError("not a PuTTY SSH-2 private key")
    if m.group(1) == b"1":
        raise KeyFormatError("PPK version 1 files are not supported", hint="re-save with PuTTYgen")
    if m.group(1) not in (b"2", b"3"):
        raise KeyFormatError("PuTTY key format too new (sshkit reads PPK versions 2 and 3)")
    version = int(m.group(1))
    algorithm = m.group(2).decode("ascii", "replace")
    if algorithm.endswith("-cert-v01@openssh.com"):
        raise KeyFormatError("PPK files holding certificates are not supported")
    if algorithm not in KEY_TYPES:
        raise KeyFormatError(f"{WHAT} has an unrecognised key type {algorithm!r}")
    encryption = t.header("Encryption").decode("ascii", "replace")
    if encryption not in ENCRYPTIONS:
        raise KeyFormatError(f"{WHAT} uses the unknown encryption {encryption!r}")
    comment = t.header("Comment")
    public_blob = t.blob("Public-Lines")
    try:
        inner = Reader(public_blob, WHAT).text()
    except KeyFormatError:
        inner = None
    if inner != algorithm:
        raise KeyFormatError(f"{WHAT} is corrupt: the public key does not match its type")
    argon2 = None
    if version == 3 and encryption != "none":
        flavour = t.header("Key-Derivation").decode("ascii", "replace")
        if flavour not in ARGON2_FLAVOURS:
            raise KeyFormatError(f"{WHAT} uses the unknown key derivation {flavour!r}")
        memory = t.number("Argon2-Memory", 0xFFFFFFFF)
        passes = t.number("Argon2-Passes", 0xFFFFFFFF)
        parallelism = t.number("Argon2-Parallelism", 0xFFFFFFFF)
        salt_hex = t.header("Argon2-Salt")
        if not re.fullmatch(rb"(?:[0-9a-fA-F]{2})*", salt_hex):
            raise KeyFormatError(f"{WHAT} format error: bad Argon2-Salt")
        argon2 = Argon2Params(
            flavour, memory, passes, parallelism, bytes.fromhex(salt_hex.decode())
        )
    private_data = t.blob("Private-Lines")
    mac = t.header("Private-MAC").decode("ascii", "replace")
    return PpkFile(version, algorithm, encryption, comment, public_blob, argon2, private_data, mac)


def _sha1(data: bytes) -> _Hash:
    # SHA-1 is what the PPK format prescribes (v2 KDF and MAC key, padding); not our choice.
    return hashlib.sha1(data, usedforsecurity=False)


def _aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _derive(
    version: int, passphrase: bytes, argon2: Argon2Params | None, allow_expensive: bool = False
) -> tuple[bytes, bytes, bytes]:
    """(AES key, IV, MAC key) for an encrypted file."""
    if version == 2:
        key = (_sha1(b"\0\0\0\0" + passphrase).digest() + _sha1(b"\0\0\0\1" + passphrase).digest())[
            :32
        ]
        return key, bytes(16), _sha1(V2_MAC_KEY_PREFIX + passphrase).digest()
    assert argon2 is not None
    out = argon2_derive(argon2, passphrase, 80, allow_expensive=allow_expensive)
    return out[:32], out[32:48], out[48:80]


def _mac(
    version: int,
    mac_key: bytes,
    algorithm: str,
    encryption: str,
    comment: bytes,
    pub: bytes,
    priv: bytes,
) -> str:
    data = b"".join(
        sshwire.string(x) for x in (algorithm.encode(), encryption.encode(), comment, pub, priv)
    )
    digest = hashlib.sha1 if version == 2 else hashlib.sha256
    return hmac.new(mac_key, data, digest).hexdigest()


def _unencrypted_mac_key(version: int) -> bytes:
    return _sha1(V2_MAC_KEY_PREFIX).digest() if version == 2 else b""


def encode_private_blob(params: KeyParams) -> bytes:
    """The PPK private blob (spec §1.3), unpadded."""
    w = sshwire.Writer()
    if isinstance(params, RsaParams):
        w.mpint(params.d).mpint(params.p).mpint(params.q).mpint(params.iqmp)
    elif isinstance(params, DsaParams):
        w.mpint(params.x)
    elif isinstance(params, EcdsaParams):
        w.mpint(params.k)
    else:
        w.string(params.seed)
    return bytes(w)


def decode_key_params(algorithm: str, public_blob: bytes, private_blob: bytes) -> KeyParams:
    """Combine the public blob and the (padded) private blob into validated key numbers."""
    pub = Reader(public_blob, WHAT)
    pub.text()
    priv = Reader(private_blob, WHAT)
    params: KeyParams
    if algorithm == RSA:
        e, n = pub.mpint(), pub.mpint()
        d, p, q, iqmp = priv.mpint(), priv.mpint(), priv.mpint(), priv.mpint()
        params = RsaParams(n=n, e=e, d=d, p=p, q=q, iqmp=iqmp)
    elif algorithm == DSA:
        p, q, g, y = pub.mpint(), pub.mpint(), pub.mpint(), pub.mpint()
        params = DsaParams(p=p, q=q, g=g, y=y, x=priv.mpint())
    elif algorithm in EDDSA_SIZES:
        public = pub.string()
        params = EddsaParams(algorithm=algorithm, public=public, seed=priv.string())
    else:
        curve = pub.text()
        if curve not in ECDSA_CURVES or algorithm != f"ecdsa-sha2-{curve}":
            raise KeyFormatError(f"{WHAT} is corrupt: curve does not match the key type")
        params = EcdsaParams(curve=curve, point=pub.string(), k=priv.mpint())
    pub.expect_end()
    return validate_params(params, WHAT)


def decode_ppk(
    data: bytes, passphrase: bytes | None = None, *, allow_expensive_kdf: bool = False
) -> PrivateKey:
    """Load a PPK v2/v3 private key, checking its MAC.

    Argon2 parameters beyond the default limits are refused (KeyFormatError)
    unless `allow_expensive_kdf`.

    Raises PassphraseError when the file is encrypted and `passphrase` is None or
    wrong; KeyFormatError when the file is malformed, or its MAC fails although
    the key inside is intact (the comment or public half was altered).
    """
    f = parse_ppk(data)
    if f.encrypted:
        if passphrase is None:
            raise PassphraseError("the key is encrypted: a passphrase is needed")
        if len(f.private_data) % 16:
            raise KeyFormatError(f"{WHAT} is corrupt: encrypted data has a bad length")
        key, iv, mac_key = _derive(f.version, passphrase, f.argon2, allow_expensive_kdf)
        private_blob = _aes_cbc(key, iv, f.private_data, decrypt=True)
    else:
        mac_key = _unencrypted_mac_key(f.version)
        private_blob = f.private_data
    mac = _mac(
        f.version, mac_key, f.algorithm, f.encryption, f.comment, f.public_blob, private_blob
    )
    # PuTTY compares the lowercase hex as a string; an uppercase MAC fails there too.
    if not hmac.compare_digest(mac.encode(), f.mac.encode("ascii", "replace")):
        if not f.encrypted:
            raise KeyFormatError(f"{WHAT} is corrupt: MAC check failed (the file was modified)")
        try:
            decode_key_params(f.algorithm, f.public_blob, private_blob)
        except KeyFormatError:
            raise PassphraseError("wrong passphrase") from None
        # The key decrypted to a consistent key pair: the passphrase is right.
        raise KeyFormatError(
            f"{WHAT} is corrupt: MAC check failed although the passphrase is right "
            "(the comment or public key was modified)"
        )
    params = decode_key_params(f.algorithm, f.public_blob, private_blob)
    return PrivateKey(params, comment_from_bytes(f.comment), f"ppk-v{f.version}", f.encrypted)


def _b64_lines(data: bytes) -> list[bytes]:
    b64 = base64.b64encode(data)
    return [b64[i : i + 64] for i in range(0, len(b64), 64)]


def encode_ppk(
    key: PrivateKey,
    *,
    version: int = 3,
    passphrase: bytes | None = None,
    argon2: Argon2Params | None = None,
    allow_expensive_kdf: bool = False,
) -> bytes:
    """Serialise `key` as PPK exactly as puttygen 0.78 would.

    Argon2 parameters beyond the default limits need `allow_expensive_kdf`.

    No encryption when `passphrase` is None or empty. Version 3 with a
    passphrase needs `argon2` (with a 16-byte random salt from the caller).
    Raises KeyFormatError when the comment holds a line break; ValueError for a
    bad version or missing Argon2 parameters.
    """
    if version not in (2, 3):
        raise ValueError("PPK version must be 2 or 3")
    comment = comment_to_bytes(key.comment)
    if b"\r" in comment or b"\n" in comment:
        raise KeyFormatError(
            "the key comment contains a line break, which PPK cannot store",
            hint="set another comment with --comment",
        )
    params = validate_params(key.params)
    algorithm = params.key_type
    public_blob = key.public_blob
    private_blob = encode_private_blob(params)
    encrypted = bool(passphrase)
    encryption = "aes256-cbc" if encrypted else "none"
    header_kdf: list[bytes] = []
    if encrypted:
        assert passphrase is not None
        pad = (16 - len(private_blob) % 16) % 16
        private_blob += _sha1(private_blob).digest()[:pad]
        if version == 3:
            if argon2 is None:
                raise ValueError("PPK v3 encryption needs Argon2 parameters and a salt")
            argon2.check(allow_expensive=allow_expensive_kdf)
            header_kdf = [
                b"Key-Derivation: " + argon2.flavour.encode(),
                b"Argon2-Memory: %d" % argon2.memory_kib,
                b"Argon2-Passes: %d" % argon2.passes,
                b"Argon2-Parallelism: %d" % argon2.parallelism,
                b"Argon2-Salt: " + argon2.salt.hex().encode(),
            ]
        aes_key, iv, mac_key = _derive(version, passphrase, argon2, allow_expensive_kdf)
        mac = _mac(version, mac_key, algorithm, encryption, comment, public_blob, private_blob)
        private_data = _aes_cbc(aes_key, iv, private_blob, decrypt=False)
    else:
        mac_key = _unencrypted_mac_key(version)
        mac = _mac(version, mac_key, algorithm, encryption, comment, public_blob, private_blob)
        private_data = private_blob
    pub_lines = _b64_lines(public_blob)
    priv_lines = _b64_lines(private_data)
    lines = [
        b"PuTTY-User-Key-File-%d: " % version + algorithm.encode(),
        b"Encryption: " + encryption.encode(),
        b"Comment: " + comment,
        b"Public-Lines: %d" % len(pub_lines),
        *pub_lines,
        *header_kdf,
        b"Private-Lines: %d" % len(priv_lines),
        *priv_lines,
        b"Private-MAC: " + mac.encode(),
    ]
    return b"\n".join(lines) + b"\n"
