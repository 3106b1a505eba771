"""OpenSSH `openssh-key-v1` private keys: reader and writer that keep the comment.

`cryptography` parses this format but drops the comment and cannot write one,
so the container is handled here (spec §5.1). Ciphers read: every one
`ssh-keygen -Z` offers (none, aes{128,192,256}-ctr/-cbc, aes{128,256}-gcm,
chacha20-poly1305, 3des-cbc); written: none or aes256-ctr (ssh-keygen's default).
KDF: bcrypt. Randomness (check int, KDF salt) is passed in by the caller.
"""

from __future__ import annotations

import base64
import binascii
import re

from sshkit.errors import KeyFormatError, PassphraseError
from sshkit.formats import sshwire
from sshkit.formats.keys import (
    DSA,
    ECDSA_CURVES,
    EDDSA_SIZES,
    RSA,
    DsaParams,
    EcdsaParams,
    EddsaParams,
    KeyFileInfo,
    KeyParams,
    PrivateKey,
    PublicKey,
    RsaParams,
    comment_from_bytes,
    comment_to_bytes,
    encode_public_blob,
    validate_params,
)
from sshkit.formats.sshwire import Reader

MAGIC = b"openssh-key-v1\x00"
BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
END = "-----END OPENSSH PRIVATE KEY-----"
FORMAT = "openssh-key-v1"
WHAT = "OpenSSH private key"

# cipher -> (key length, iv length, block size, mode)
CIPHERS: dict[str, tuple[int, int, int, str]] = {
    "none": (0, 0, 8, "none"),
    "aes128-ctr": (16, 16, 16, "ctr"),
    "aes192-ctr": (24, 16, 16, "ctr"),
    "aes256-ctr": (32, 16, 16, "ctr"),
    "aes128-cbc": (16, 16, 16, "cbc"),
    "aes192-cbc": (24, 16, 16, "cbc"),
    "aes256-cbc": (32, 16, 16, "cbc"),
    "aes128-gcm@openssh.com": (16, 12, 16, "gcm"),
    "aes256-gcm@openssh.com": (32, 12, 16, "gcm"),
    "chacha20-poly1305@openssh.com": (64, 0, 8, "chachapoly"),
    "3des-cbc": (24, 8, 8, "3des"),
}
_AEAD = ("gcm", "chachapoly")
# ssh-keygen writes 16 (24 since 9.4); `-a 100` is common advice. Far beyond that the KDF
# takes minutes to hours, so a larger count is treated as corruption rather than work.
MAX_BCRYPT_ROUNDS = 4096
DEFAULT_BCRYPT_ROUNDS = 16


def _unarmor(data: bytes) -> bytes:
    text = data.decode("ascii", "replace")
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        raise KeyFormatError(f"{WHAT} is corrupt: missing BEGIN/END lines")
    body = re.sub(r"\s+", "", text[start + len(BEGIN) : end])
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{WHAT} is corrupt: bad base64") from None
    if not raw.startswith(MAGIC):
        raise KeyFormatError(f"{WHAT} is corrupt: bad magic")
    return raw


class _Container:
    def __init__(self, data: bytes) -> None:
        r = Reader(_unarmor(data)[len(MAGIC) :], WHAT)
        self.cipher = r.text()
        self.kdf = r.text()
        self.kdf_options = r.string()
        nkeys = r.uint32()
        if nkeys != 1:
            raise KeyFormatError(f"{WHAT} holds {nkeys} keys; exactly one is supported")
        self.public_blob = r.string()
        self.private = r.string()
        self.tag = r.raw(16) if CIPHERS.get(self.cipher, (0, 0, 0, ""))[3] in _AEAD else b""
        r.expect_end()
        if self.cipher not in CIPHERS:
            raise KeyFormatError(
                f"{WHAT} uses the unsupported cipher {self.cipher!r}",
                hint="re-encrypt it with `ssh-keygen -p -Z aes256-ctr -f KEY`",
            )
        if (self.cipher == "none") != (self.kdf == "none"):
            raise KeyFormatError(f"{WHAT} is corrupt: cipher and KDF disagree")
        if self.kdf not in ("none", "bcrypt"):
            raise KeyFormatError(f"{WHAT} uses the unsupported KDF {self.kdf!r}")

    @property
    def encrypted(self) -> bool:
        return self.cipher != "none"


def probe_openssh(data: bytes) -> KeyFileInfo:
    """Public half (in clear in this format) and, when unencrypted, the comment."""
    c = _Container(data)
    comment = ""
    if not c.encrypted:
        comment = decode_openssh(data, None).comment
    return KeyFileInfo(FORMAT, c.encrypted, True, PublicKey.from_blob(c.public_blob, comment))


def _bcrypt_key(passphrase: bytes, kdf_options: bytes, length: int) -> bytes:
    import bcrypt

    r = Reader(kdf_options, f"{WHAT} KDF options")
    salt = r.string()
    rounds = r.uint32()
    r.expect_end()
    if not salt or rounds < 1:
        raise KeyFormatError(f"{WHAT} is corrupt: bad bcrypt parameters")
    if rounds > MAX_BCRYPT_ROUNDS:
        raise KeyFormatError(
            f"{WHAT} asks for {rounds} bcrypt rounds; sshkit accepts at most {MAX_BCRYPT_ROUNDS}"
        )
    if not passphrase:
        raise PassphraseError("wrong passphrase (it is empty)")
    return bytes(bcrypt.kdf(passphrase, salt, length, rounds, ignore_few_rounds=True))


def _decrypt(c: _Container, passphrase: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_len, iv_len, block, mode = CIPHERS[c.cipher]
    if len(c.private) % block:
        raise KeyFormatError(f"{WHAT} is corrupt: encrypted section has a bad length")
    km = _bcrypt_key(passphrase, c.kdf_options, key_len + iv_len)
    key, iv = km[:key_len], km[key_len:]
    if mode == "gcm":
        try:
            return AESGCM(key).decrypt(iv, c.private + c.tag, None)
        except InvalidTag:
            raise PassphraseError("wrong passphrase") from None
    if mode == "chachapoly":
        return _chachapoly_decrypt(key, c.private, c.tag)
    if mode == "3des":
        import warnings

        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
        return dec.update(c.private) + dec.finalize()
    m = modes.CTR(iv) if mode == "ctr" else modes.CBC(iv)
    dec = Cipher(algorithms.AES(key), m).decryptor()
    return dec.update(c.private) + dec.finalize()


def _chachapoly_decrypt(key: bytes, data: bytes, tag: bytes) -> bytes:
    """OpenSSH's chacha20-poly1305 (PROTOCOL.chacha20poly1305) with sequence number 0.

    The first 32 key bytes are the main key (the header key is unused: no length
    field here). Poly1305 key = ChaCha20 block 0; the data uses blocks 1 onwards.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    nonce = bytes(8)  # the 64-bit big-endian sequence number, 0 for key files

    def stream(counter: int) -> Cipher[None]:
        # OpenSSL's 16-byte ChaCha20 IV is the block counter (little-endian) then the nonce.
        return Cipher(algorithms.ChaCha20(key[:32], counter.to_bytes(8, "little") + nonce), None)

    poly_key = stream(0).encryptor().update(bytes(32))
    try:
        Poly1305.verify_tag(poly_key, data, tag)
    except InvalidSignature:
        raise PassphraseError("wrong passphrase") from None
    return stream(1).decryptor().update(data)


def _read_params(r: Reader, key_type: str) -> KeyParams:
    if key_type == RSA:
        n, e, d, iqmp, p, q = (r.mpint() for _ in range(6))
        return RsaParams(n=n, e=e, d=d, p=p, q=q, iqmp=iqmp)
    if key_type == DSA:
        p, q, g, y, x = (r.mpint() for _ in range(5))
        return DsaParams(p=p, q=q, g=g, y=y, x=x)
    if key_type.startswith("ecdsa-sha2-") and key_type[11:] in ECDSA_CURVES:
        curve = r.text()
        if curve != key_type[11:]:
            raise KeyFormatError(f"{WHAT} is corrupt: curve does not match the key type")
        point = r.string()
        return EcdsaParams(curve=curve, point=point, k=r.mpint())
    if key_type in EDDSA_SIZES:
        size = EDDSA_SIZES[key_type]
        public = r.string()
        both = r.string()
        if len(public) != size or len(both) != 2 * size or both[size:] != public:
            raise KeyFormatError(f"{WHAT} is corrupt: bad {key_type} key lengths")
        return EddsaParams(algorithm=key_type, public=public, seed=both[:size])
    raise KeyFormatError(f"{WHAT} holds the unsupported key type {key_type!r}")


def decode_openssh(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load an openssh-key-v1 private key with its comment.

    Raises PassphraseError when encrypted and `passphrase` is None or wrong;
    KeyFormatError when corrupt or unsupported.
    """
    c = _Container(data)
    if c.encrypted:
        if passphrase is None:
            raise PassphraseError("the key is encrypted: a passphrase is needed")
        plain = _decrypt(c, passphrase)
    else:
        plain = c.private
    r = Reader(plain, WHAT)
    check1, check2 = r.uint32(), r.uint32()
    if check1 != check2:
        if c.encrypted:
            raise PassphraseError("wrong passphrase")
        raise KeyFormatError(f"{WHAT} is corrupt: check bytes differ")
    key_type = r.text()
    params = _read_params(r, key_type)
    comment = comment_from_bytes(r.string())
    pad = r.rest()
    if pad != bytes(range(1, len(pad) + 1)):
        raise KeyFormatError(f"{WHAT} is corrupt: bad padding")
    params = validate_params(params, WHAT)
    if encode_public_blob(params) != c.public_blob:
        raise KeyFormatError(f"{WHAT} is corrupt: public and private halves differ")
    return PrivateKey(params, comment, FORMAT, c.encrypted)


def _private_fields(params: KeyParams) -> bytes:
    w = sshwire.Writer().string(params.key_type.encode())
    if isinstance(params, RsaParams):
        for v in (params.n, params.e, params.d, params.iqmp, params.p, params.q):
            w.mpint(v)
    elif isinstance(params, DsaParams):
        for v in (params.p, params.q, params.g, params.y, params.x):
            w.mpint(v)
    elif isinstance(params, EcdsaParams):
        w.string(params.curve.encode()).string(params.point).mpint(params.k)
    else:
        w.string(params.public).string(params.seed + params.public)
    return bytes(w)


def encode_openssh(
    key: PrivateKey,
    *,
    check_int: int,
    passphrase: bytes | None = None,
    kdf_salt: bytes | None = None,
    kdf_rounds: int = DEFAULT_BCRYPT_ROUNDS,
) -> bytes:
    """Serialise as openssh-key-v1 (PEM armour, 70-column base64 like ssh-keygen).

    Unencrypted when `passphrase` is None or empty; otherwise aes256-ctr with
    bcrypt(`kdf_salt`, `kdf_rounds`). `check_int` is a random uint32 and
    `kdf_salt` 16 random bytes, both from the caller.
    """
    encrypted = bool(passphrase)
    cipher = "aes256-ctr" if encrypted else "none"
    _, _, block, _ = CIPHERS[cipher]
    body = (
        sshwire.uint32(check_int)
        + sshwire.uint32(check_int)
        + _private_fields(key.params)
        + sshwire.string(comment_to_bytes(key.comment))
    )
    body += bytes(range(1, 1 + (-len(body)) % block))
    if encrypted:
        import bcrypt
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        assert passphrase is not None
        if kdf_salt is None:
            raise ValueError("kdf_salt is required for an encrypted key")
        kdf_options = sshwire.string(kdf_salt) + sshwire.uint32(kdf_rounds)
        km = bytes(bcrypt.kdf(passphrase, kdf_salt, 48, kdf_rounds, ignore_few_rounds=True))
        enc = Cipher(algorithms.AES(km[:32]), modes.CTR(km[32:])).encryptor()
        body = enc.update(body) + enc.finalize()
        kdf = "bcrypt"
    else:
        kdf_options = b""
        kdf = "none"
    raw = (
        MAGIC
        + sshwire.string(cipher.encode())
        + sshwire.string(kdf.encode())
        + sshwire.string(kdf_options)
        + sshwire.uint32(1)
        + sshwire.string(key.public_blob)
        + sshwire.string(body)
    )
    b64 = base64.b64encode(raw).decode("ascii")
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return ("\n".join([BEGIN, *lines, END]) + "\n").encode("ascii")
