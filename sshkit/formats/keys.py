"""SSH keys: the in-memory model, public lines, fingerprints, and loading any private key.

Supported private key files (`load_private_key`):

- openssh-key-v1 (`BEGIN OPENSSH PRIVATE KEY`), clear or bcrypt-encrypted; the
  comment is kept (see `sshkit.formats.openssh`);
- PuTTY PPK v2/v3 (see `sshkit.formats.ppk`);
- PEM: PKCS#1 RSA, DSA, SEC1 EC (optionally `Proc-Type: 4,ENCRYPTED`), PKCS#8
  and encrypted PKCS#8. These hold no comment.

Key types: ssh-rsa, ssh-dss, ecdsa-sha2-nistp256/384/521, ssh-ed25519, ssh-ed448.

Pure: bytes in, objects out. `cryptography` is imported inside the functions
that need it, so importing this module (for `parse_public_line`) stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sshkit.errors import KeyFormatError, PassphraseError
from sshkit.formats import sshwire
from sshkit.formats.sshwire import Reader

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurve
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

RSA = "ssh-rsa"
DSA = "ssh-dss"
ED25519 = "ssh-ed25519"
ED448 = "ssh-ed448"
ECDSA_CURVES: dict[str, tuple[str, int]] = {
    # ssh curve name -> (cryptography curve name, bits)
    "nistp256": ("secp256r1", 256),
    "nistp384": ("secp384r1", 384),
    "nistp521": ("secp521r1", 521),
}
EDDSA_SIZES = {ED25519: 32, ED448: 57}
KEY_TYPES = (RSA, DSA, *(f"ecdsa-sha2-{c}" for c in ECDSA_CURVES), ED25519, ED448)

# Public-only types that may appear in authorized_keys / .pub files.
_SK_TYPES = {"sk-ecdsa-sha2-nistp256@openssh.com": 256, "sk-ssh-ed25519@openssh.com": 256}
_CERT_SUFFIX = "-cert-v01@openssh.com"

# The comment puttygen gives to keys read from a file format without one.
IMPORTED_KEY_COMMENT = "imported-openssh-key"


# --- key material --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RsaParams:
    n: int
    e: int
    d: int
    p: int
    q: int
    iqmp: int

    key_type = RSA


@dataclass(frozen=True, repr=False)
class DsaParams:
    p: int
    q: int
    g: int
    y: int
    x: int

    key_type = DSA


@dataclass(frozen=True, repr=False)
class EcdsaParams:
    curve: str  # "nistp256" | "nistp384" | "nistp521"
    point: bytes  # uncompressed 0x04 || X || Y
    k: int

    @property
    def key_type(self) -> str:
        return f"ecdsa-sha2-{self.curve}"


@dataclass(frozen=True, repr=False)
class EddsaParams:
    algorithm: str  # ED25519 | ED448
    public: bytes  # RFC 8032 encoding
    seed: bytes  # RFC 8032 private key

    @property
    def key_type(self) -> str:
        return self.algorithm


KeyParams = RsaParams | DsaParams | EcdsaParams | EddsaParams


def encode_public_blob(params: KeyParams) -> bytes:
    """The SSH wire public key blob (RFC 4253 §6.6 and friends)."""
    w = sshwire.Writer().string(params.key_type.encode())
    if isinstance(params, RsaParams):
        w.mpint(params.e).mpint(params.n)
    elif isinstance(params, DsaParams):
        w.mpint(params.p).mpint(params.q).mpint(params.g).mpint(params.y)
    elif isinstance(params, EcdsaParams):
        w.string(params.curve.encode()).string(params.point)
    else:
        w.string(params.public)
    return bytes(w)


def fingerprint_sha256(public_blob: bytes) -> str:
    """`SHA256:<base64 without padding>` of the blob, exactly as ssh-keygen -l prints it."""
    digest = hashlib.sha256(public_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def fingerprint_md5(public_blob: bytes) -> str:
    """`MD5:aa:bb:...` as `ssh-keygen -l -E md5` prints it."""
    digest = hashlib.md5(public_blob, usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _bits_of_params(params: KeyParams) -> int:
    if isinstance(params, RsaParams):
        return params.n.bit_length()
    if isinstance(params, DsaParams):
        return params.p.bit_length()
    if isinstance(params, EcdsaParams):
        return ECDSA_CURVES[params.curve][1]
    return 256 if params.algorithm == ED25519 else 448


def _corrupt(what: str, why: str) -> KeyFormatError:
    return KeyFormatError(f"{what} is corrupt: {why}")


def validate_params(params: KeyParams, what: str = "private key") -> KeyParams:
    """Check that the private half matches the public half; return the canonical form.

    RSA is normalised the way PuTTY does it: p > q and iqmp = q^-1 mod p.
    Raises KeyFormatError when the numbers are inconsistent.
    """
    if isinstance(params, RsaParams):
        n, e, d, p, q = params.n, params.e, params.d, params.p, params.q
        if p < 2 or q < 2 or e < 3 or d < 1 or n != p * q:
            raise _corrupt(what, "RSA primes do not match the modulus")
        if (e * d) % (p - 1) != 1 % (p - 1) or (e * d) % (q - 1) != 1 % (q - 1):
            raise _corrupt(what, "RSA private exponent does not match")
        if p < q:
            p, q = q, p
        try:
            iqmp = pow(q, -1, p)
        except ValueError:
            raise _corrupt(what, "RSA primes are not coprime") from None
        return RsaParams(n=n, e=e, d=d, p=p, q=q, iqmp=iqmp)
    if isinstance(params, DsaParams):
        p, q, g, y, x = params.p, params.q, params.g, params.y, params.x
        if p < 3 or q < 2 or not 1 < g < p or not 0 < x < q or not 0 < y < p:
            raise _corrupt(what, "DSA parameters out of range")
        if pow(g, x, p) != y:
            raise _corrupt(what, "DSA private key does not match the public key")
        return params
    if isinstance(params, EcdsaParams):
        if params.curve not in ECDSA_CURVES:
            raise KeyFormatError(f"unsupported ECDSA curve {params.curve!r}")
        if _ecdsa_public_point(params.curve, params.k, what) != params.point:
            raise _corrupt(what, "ECDSA private key does not match the public key")
        return params
    size = EDDSA_SIZES.get(params.algorithm)
    if size is None or len(params.seed) != size or len(params.public) != size:
        raise _corrupt(what, f"{params.algorithm} key has the wrong length")
    if _eddsa_public(params.algorithm, params.seed) != params.public:
        raise _corrupt(what, f"{params.algorithm} private key does not match the public key")
    return params


def _ec_curve(curve: str) -> EllipticCurve:
    from cryptography.hazmat.primitives.asymmetric import ec

    if curve == "nistp256":
        return ec.SECP256R1()
    if curve == "nistp384":
        return ec.SECP384R1()
    return ec.SECP521R1()


def _ecdsa_public_point(curve: str, k: int, what: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ec_curve = _ec_curve(curve)
    try:
        priv = ec.derive_private_key(k, ec_curve)
    except (ValueError, TypeError, OverflowError):
        raise _corrupt(what, "ECDSA private scalar out of range") from None
    return priv.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _eddsa_public(algorithm: str, seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if algorithm == ED25519:
        pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
        return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    pub448 = ed448.Ed448PrivateKey.from_private_bytes(seed).public_key()
    return pub448.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- public keys ---------------------------------------------------------------------------


def _public_blob_bits(blob: bytes, what: str = "public key") -> tuple[str, int]:
    """Parse a public blob far enough to return (key type, bits); KeyFormatError otherwise."""
    r = Reader(blob, what)
    key_type = r.text()
    cert = key_type.endswith(_CERT_SUFFIX)
    base = key_type[: -len(_CERT_SUFFIX)] if cert else key_type
    if cert:
        r.string()  # nonce
    if base == RSA:
        r.mpint()  # e
        bits = r.mpint().bit_length()
    elif base == DSA:
        bits = r.mpint().bit_length()
        r.mpint(), r.mpint(), r.mpint()
    elif base.startswith("ecdsa-sha2-") and base[11:] in ECDSA_CURVES:
        curve = r.text()
        if curve != base[11:]:
            raise _corrupt(what, "curve name does not match the key type")
        point = r.string()
        size = (ECDSA_CURVES[curve][1] + 7) // 8
        if len(point) != 1 + 2 * size or point[0] != 4:
            raise _corrupt(what, "bad ECDSA point")
        bits = ECDSA_CURVES[curve][1]
    elif base in EDDSA_SIZES:
        if len(r.string()) != EDDSA_SIZES[base]:
            raise _corrupt(what, f"{base} public key has the wrong length")
        bits = 256 if base == ED25519 else 448
    elif base in _SK_TYPES:
        bits = _SK_TYPES[base]
        r.rest()
    else:
        raise KeyFormatError(f"unsupported key type {key_type!r}")
    if not cert:
        r.expect_end()
    return key_type, bits


@dataclass(frozen=True)
class PublicKey:
    """A public key: wire blob plus the comment from its line (may be empty)."""

    key_type: str
    blob: bytes = field(repr=False)
    bits: int
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.blob)

    def line(self) -> str:
        """`type base64 [comment]` as in a .pub file / authorized_keys (no newline)."""
        b64 = base64.b64encode(self.blob).decode("ascii")
        return f"{self.key_type} {b64} {self.comment}" if self.comment else f"{self.key_type} {b64}"

    @classmethod
    def from_blob(cls, blob: bytes, comment: str = "") -> PublicKey:
        key_type, bits = _public_blob_bits(blob)
        return cls(key_type=key_type, blob=blob, bits=bits, comment=comment)


_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _b64decode(text: str, what: str) -> bytes:
    if not _B64_RE.fullmatch(text):
        raise KeyFormatError(f"{what} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None


def parse_public_line(line: str) -> PublicKey:
    """Parse `type base64 [comment]` (a .pub file line, or an authorized_keys line without options).

    Raises KeyFormatError when the line is not a public key, the base64 is bad,
    or the blob's own type disagrees with the first field.
    """
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError("not an SSH public key line (expected: type base64 [comment])")
    key_type, b64 = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    blob = _b64decode(b64, "public key")
    inner_type, bits = _public_blob_bits(blob)
    if inner_type != key_type:
        raise KeyFormatError(f"public key line says {key_type!r} but the key is {inner_type!r}")
    return PublicKey(key_type=key_type, blob=blob, bits=bits, comment=comment)


def parse_rfc4716(text: str) -> PublicKey:
    """Parse an RFC 4716 `---- BEGIN SSH2 PUBLIC KEY ----` block (as `puttygen -p` writes)."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if (
        not lines
        or lines[0] != "---- BEGIN SSH2 PUBLIC KEY ----"
        or "---- END SSH2 PUBLIC KEY ----" not in lines
    ):
        raise KeyFormatError("not an RFC 4716 public key")
    body = lines[1 : lines.index("---- END SSH2 PUBLIC KEY ----")]
    comment = ""
    b64: list[str] = []
    i = 0
    while i < len(body):
        ln = body[i]
        if ":" in ln and not b64:
            header = ln
            while header.endswith("\\") and i + 1 < len(body):  # continuation lines
                i += 1
                header = header[:-1] + body[i]
            name, _, value = header.partition(":")
            value = value.strip()
            if name.strip().lower() == "comment":
                comment = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        else:
            b64.append(ln)
        i += 1
    blob = _b64decode("".join(b64), "public key")
    return PublicKey.from_blob(blob, comment)


def parse_public_file(data: bytes) -> PublicKey:
    """A `.pub` file: one OpenSSH line or an RFC 4716 block (the first key only)."""
    text = data.decode("utf-8", "surrogateescape")
    if text.lstrip().startswith("---- BEGIN SSH2 PUBLIC KEY"):
        return parse_rfc4716(text)
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return parse_public_line(line)
    raise KeyFormatError("no public key found")


# --- private keys --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PrivateKey:
    """A private key with its comment.

    Equality compares key material and comment only, not where the key came
    from. `repr` shows the fingerprint, never the secret numbers.
    """

    params: KeyParams
    comment: str = ""
    source_format: str = field(default="", compare=False)
    encrypted: bool = field(default=False, compare=False)

    @property
    def key_type(self) -> str:
        return self.params.key_type

    @property
    def public_blob(self) -> bytes:
        return encode_public_blob(self.params)

    @property
    def bits(self) -> int:
        return _bits_of_params(self.params)

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.public_blob)

    def public_key(self) -> PublicKey:
        return PublicKey(self.key_type, self.public_blob, self.bits, self.comment)

    def public_line(self) -> str:
        """The OpenSSH `.pub` line `type base64 [comment]` (no newline)."""
        return self.public_key().line()

    def with_comment(self, comment: str) -> PrivateKey:
        return PrivateKey(self.params, comment, self.source_format, self.encrypted)

    def __repr__(self) -> str:
        return f"PrivateKey({self.key_type} {self.bits} {self.fingerprint} {self.comment!r})"


def comment_from_bytes(raw: bytes) -> str:
    """Comments are bytes on disk; keep undecodable bytes round-trippable."""
    return raw.decode("utf-8", "surrogateescape")


def comment_to_bytes(comment: str) -> bytes:
    """Raises KeyFormatError for text no file could hold (a lone UTF-16 surrogate)."""
    try:
        return comment.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise KeyFormatError(
            "the key comment is not valid text (it cannot be encoded as UTF-8)"
        ) from None


def from_cryptography(key: PrivateKeyTypes) -> KeyParams:
    """Key numbers from a `cryptography` private key object (KeyFormatError if unsupported)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    if isinstance(key, rsa.RSAPrivateKey):
        pn = key.private_numbers()
        return RsaParams(
            n=pn.public_numbers.n, e=pn.public_numbers.e, d=pn.d, p=pn.p, q=pn.q, iqmp=pn.iqmp
        )
    if isinstance(key, dsa.DSAPrivateKey):
        dn = key.private_numbers()
        par = dn.public_numbers.parameter_numbers
        return DsaParams(p=par.p, q=par.q, g=par.g, y=dn.public_numbers.y, x=dn.x)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {v[0]: k for k, v in ECDSA_CURVES.items()}
        curve = names.get(key.curve.name)
        if curve is None:
            raise KeyFormatError(f"unsupported ECDSA curve {key.curve.name!r}")
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return EcdsaParams(curve=curve, point=point, k=key.private_numbers().private_value)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        alg = ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else ED448
        seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return EddsaParams(algorithm=alg, public=pub, seed=seed)
    raise KeyFormatError(f"unsupported key type {type(key).__name__}")


# --- PEM -----------------------------------------------------------------------------------

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
PEM_FORMATS = {
    "RSA PRIVATE KEY": "pem-pkcs1",
    "DSA PRIVATE KEY": "pem-dsa",
    "EC PRIVATE KEY": "pem-sec1",
    "PRIVATE KEY": "pkcs8",
    "ENCRYPTED PRIVATE KEY": "pkcs8",
}


@dataclass(frozen=True)
class _Pem:
    label: str
    headers: dict[str, str]
    body: bytes


def _parse_pem(data: bytes) -> _Pem | None:
    m = _PEM_RE.search(data)
    if m is None:
        return None
    label = m.group(1).decode("ascii")
    headers: dict[str, str] = {}
    b64_lines: list[bytes] = []
    for raw in m.group(2).splitlines():
        line = raw.strip()
        if not line:
            continue
        if b":" in line and not b64_lines:
            k, _, v = line.partition(b":")
            headers[k.decode("ascii", "replace").strip()] = v.decode("ascii", "replace").strip()
        else:
            b64_lines.append(line)
    try:
        body = base64.b64decode(b"".join(b64_lines), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("PEM key is corrupt: bad base64") from None
    return _Pem(label, headers, body)


def _pem_is_encrypted(pem: _Pem) -> bool:
    return pem.label == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in pem.headers.get("Proc-Type", "")


def _load_pem(data: bytes, pem: _Pem, passphrase: bytes | None) -> PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    fmt = PEM_FORMATS[pem.label]
    encrypted = _pem_is_encrypted(pem)
    if encrypted and passphrase is None:
        raise PassphraseError("the key is encrypted: a passphrase is needed")
    password = passphrase if encrypted else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # 3DES/DSA deprecation notices are not our user's concern
            if encrypted and pem.label != "ENCRYPTED PRIVATE KEY":
                from cryptography.hazmat.primitives.serialization import load_pem_private_key

                key = load_pem_private_key(data, password)
            else:
                key = load_der_private_key(pem.body, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if pem.label == "EC PRIVATE KEY":
            # PuTTY writes the SEC1 scalar without fixed width, which cryptography refuses.
            return _load_sec1_lenient(pem, passphrase, encrypted)
        text = str(exc).lower()
        if encrypted and ("password" in text or "decrypt" in text):
            raise PassphraseError("wrong passphrase") from None
        raise KeyFormatError(f"{fmt} key is corrupt or unsupported") from None
    params = validate_params(from_cryptography(key))
    return PrivateKey(params, "", fmt, encrypted)


def _pem_decrypt(pem: _Pem, passphrase: bytes) -> bytes:
    """Traditional OpenSSL PEM encryption (EVP_BytesToKey with MD5, one round)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    dek = pem.headers.get("DEK-Info", "")
    cipher_name, _, iv_hex = dek.partition(",")
    try:
        iv = bytes.fromhex(iv_hex)
    except ValueError:
        raise KeyFormatError("PEM key is corrupt: bad DEK-Info") from None
    sizes = {"AES-128-CBC": 16, "AES-192-CBC": 24, "AES-256-CBC": 32, "DES-EDE3-CBC": 24}
    key_len = sizes.get(cipher_name.strip())
    if key_len is None:
        raise KeyFormatError(f"unsupported PEM encryption {cipher_name.strip()!r}")
    block = 8 if cipher_name.startswith("DES") else 16
    if len(iv) != block or not pem.body or len(pem.body) % block:
        raise KeyFormatError("PEM key is corrupt: bad encryption header or length")
    key = b""
    prev = b""
    while len(key) < key_len:
        prev = hashlib.md5(prev + passphrase + iv[:8], usedforsecurity=False).digest()
        key += prev
    key = key[:key_len]
    if block == 8:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
    else:
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = dec.update(pem.body) + dec.finalize()
    pad = plain[-1]
    if not 1 <= pad <= block or plain[-pad:] != bytes([pad]) * pad:
        raise PassphraseError("wrong passphrase")
    return plain[:-pad]


_EC_OIDS = {
    bytes.fromhex("2a8648ce3d030107"): "nistp256",
    bytes.fromhex("2b81040022"): "nistp384",
    bytes.fromhex("2b81040023"): "nistp521",
}


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """Split DER TLVs at one level (tag, content); KeyFormatError on malformed input."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise KeyFormatError("EC key is corrupt: truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4 or pos + n > len(data):
                raise KeyFormatError("EC key is corrupt: bad DER length")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if pos + length > len(data):
            raise KeyFormatError("EC key is corrupt: truncated DER")
        out.append((tag, data[pos : pos + length]))
        pos += length
    return out


def _load_sec1_lenient(pem: _Pem, passphrase: bytes | None, encrypted: bool) -> PrivateKey:
    der = pem.body
    if encrypted:
        assert passphrase is not None
        der = _pem_decrypt(pem, passphrase)
    try:
        (tag, seq), *_ = _der_items(der)
        if tag != 0x30:
            raise ValueError
        items = _der_items(seq)
        if items[0] != (0x02, b"\x01") or items[1][0] != 0x04:
            raise ValueError
        k = int.from_bytes(items[1][1], "big")
        curve = point = None
        for tag, content in items[2:]:
            inner = _der_items(content)
            if tag == 0xA0 and inner and inner[0][0] == 0x06:
                curve = _EC_OIDS.get(inner[0][1])
            elif tag == 0xA1 and inner and inner[0][0] == 0x03:
                point = inner[0][1][1:]  # drop the BIT STRING's unused-bits byte
    except (ValueError, IndexError, KeyFormatError):
        if encrypted:
            raise PassphraseError("wrong passphrase") from None
        raise KeyFormatError("EC key is corrupt") from None
    if curve is None:
        raise KeyFormatError("EC key uses an unsupported curve")
    computed = _ecdsa_public_point(curve, k, "EC key")
    if point is not None and point != computed:
        raise KeyFormatError("EC key is corrupt: public point does not match")
    return PrivateKey(EcdsaParams(curve, computed, k), "", "pem-sec1", encrypted)


# --- detection and loading -----------------------------------------------------------------

OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
PPK_MAGIC = b"PuTTY-User-Key-File-"
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class KeyFileInfo:
    """What can be told about a key file without its passphrase."""

    # openssh-key-v1 | ppk-v2 | ppk-v3 | pem-pkcs1 | pem-dsa | pem-sec1 | pkcs8
    # | openssh-public | rfc4716-public
    format: str
    encrypted: bool
    private: bool
    public: PublicKey | None  # None when the public half is itself encrypted (PEM)


def _check_bom(data: bytes) -> None:
    if data.startswith(_UTF8_BOM):
        raise KeyFormatError(
            "the key file starts with a UTF-8 byte-order mark",
            hint="remove the first three bytes (PuTTY and ssh-keygen reject such files too)",
        )


def probe_key_file(data: bytes) -> KeyFileInfo:
    """Identify a key file and read what is readable without a passphrase.

    Raises KeyFormatError for unrecognised or corrupt files.
    """
    _check_bom(data)
    head = data.lstrip()
    if head.startswith(PPK_MAGIC):
        import sshkit.formats.ppk as ppk

        f = ppk.parse_ppk(data)
        pub = PublicKey.from_blob(f.public_blob, comment_from_bytes(f.comment))
        return KeyFileInfo(f"ppk-v{f.version}", f.encrypted, True, pub)
    if OPENSSH_BEGIN in data:
        from sshkit.formats import openssh

        return openssh.probe_openssh(data)
    pem = _parse_pem(data)
    if pem is not None and pem.label in PEM_FORMATS:
        encrypted = _pem_is_encrypted(pem)
        if encrypted:
            return KeyFileInfo(PEM_FORMATS[pem.label], True, True, None)
        key = _load_pem(data, pem, None)
        return KeyFileInfo(key.source_format, False, True, key.public_key())
    try:
        pub = parse_public_file(data)
    except KeyFormatError:
        pass
    else:
        fmt = "rfc4716-public" if head.startswith(b"---- BEGIN SSH2") else "openssh-public"
        return KeyFileInfo(fmt, False, False, pub)
    if pem is not None:
        raise KeyFormatError(f"unsupported PEM type {pem.label!r}")
    raise KeyFormatError("not a recognised SSH key file")


def load_private_key(
    data: bytes, passphrase: bytes | None = None, *, allow_expensive_kdf: bool = False
) -> PrivateKey:
    """Load a private key from any supported file format (see the module docstring).

    `allow_expensive_kdf` lifts the default Argon2 limits of PPK v3 files.

    `passphrase` is used only when the file is encrypted. Raises PassphraseError
    when it is needed but missing, or wrong; KeyFormatError when the file is
    corrupt, of an unknown format, or a public key.
    """
    _check_bom(data)
    head = data.lstrip()
    if head.startswith(PPK_MAGIC):
        import sshkit.formats.ppk as ppk

        return ppk.decode_ppk(data, passphrase, allow_expensive_kdf=allow_expensive_kdf)
    if OPENSSH_BEGIN in data:
        from sshkit.formats import openssh

        return openssh.decode_openssh(data, passphrase)
    pem = _parse_pem(data)
    if pem is not None:
        if pem.label not in PEM_FORMATS:
            raise KeyFormatError(f"unsupported PEM type {pem.label!r}")
        return _load_pem(data, pem, passphrase)
    if head.startswith(b"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY"):
        raise KeyFormatError("ssh.com private keys are not supported", hint="convert with puttygen")
    try:
        parse_public_file(data)
    except KeyFormatError:
        raise KeyFormatError("not a recognised private key file") from None
    raise KeyFormatError("this is a public key, not a private key")


def cryptography_key(params: KeyParams) -> Any:
    """The equivalent `cryptography` private key object (for signing in tests and tools)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(params, RsaParams):
        pub = rsa.RSAPublicNumbers(params.e, params.n)
        return rsa.RSAPrivateNumbers(
            params.p,
            params.q,
            params.d,
            params.d % (params.p - 1),
            params.d % (params.q - 1),
            params.iqmp,
            pub,
        ).private_key()
    if isinstance(params, DsaParams):
        pn = dsa.DSAParameterNumbers(params.p, params.q, params.g)
        return dsa.DSAPrivateNumbers(params.x, dsa.DSAPublicNumbers(params.y, pn)).private_key()
    if isinstance(params, EcdsaParams):
        return ec.derive_private_key(params.k, _ec_curve(params.curve))
    if params.algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(params.seed)
    return ed448.Ed448PrivateKey.from_private_bytes(params.seed)
