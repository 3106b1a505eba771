"""PPK known answers: each puttygen fixture reads to its fingerprint and rewrites byte for byte."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from sshkit.errors import KeyFormatError, PassphraseError
from sshkit.formats import ppk
from sshkit.formats.keys import (
    DsaParams,
    EcdsaParams,
    EddsaParams,
    RsaParams,
    load_private_key,
    parse_public_line,
)
from tests.ppk_vectors import PASSPHRASE, VECTORS, passphrase_of, ppk_entries

ENTRIES = ppk_entries()
ENCRYPTED = [e for e in ENTRIES if e["encryption"] != "none"]


def _id(entry: dict[str, Any]) -> str:
    return str(entry["file"]).removeprefix("ppk/")


def test_the_vectors_are_all_here() -> None:
    assert len(ENTRIES) == 53
    assert len(list((VECTORS / "ppk").glob("*.ppk"))) == 53


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_reading_gives_puttygens_fingerprint_and_comment(entry: dict[str, Any]) -> None:
    key = load_private_key((VECTORS / entry["file"]).read_bytes(), passphrase_of(entry))
    assert key.fingerprint == entry["sha256_fingerprint"]
    assert key.key_type == entry["algorithm"]
    assert key.comment == entry["comment"]
    assert key.source_format == f"ppk-v{entry['version']}"
    assert key.encrypted == (entry["encryption"] != "none")


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_writing_reproduces_the_puttygen_file_byte_for_byte(entry: dict[str, Any]) -> None:
    original = (VECTORS / entry["file"]).read_bytes()
    passphrase = passphrase_of(entry)
    key = load_private_key(original, passphrase)
    kdf = entry["kdf"]
    argon2 = None
    if kdf:
        argon2 = ppk.Argon2Params(
            flavour=kdf["Key-Derivation"],
            memory_kib=int(kdf["Argon2-Memory"]),
            passes=int(kdf["Argon2-Passes"]),
            parallelism=int(kdf["Argon2-Parallelism"]),
            salt=bytes.fromhex(kdf["Argon2-Salt"]),
        )
    written = ppk.encode_ppk(
        key.with_comment(entry["comment"]),
        version=entry["version"],
        passphrase=passphrase,
        argon2=argon2,
    )
    # sshkit always writes LF, as puttygen does; the CRLF/CR fixtures are LF copies re-ended.
    expected = original.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert written == expected
    if entry["line_endings"] == "LF":
        assert written == original


@pytest.mark.parametrize("entry", ENCRYPTED, ids=_id)
def test_wrong_passphrase_is_a_passphrase_error(entry: dict[str, Any]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    with pytest.raises(PassphraseError, match=r"^wrong passphrase$"):
        load_private_key(data, b"not-the-passphrase")
    with pytest.raises(PassphraseError, match="passphrase is needed"):
        load_private_key(data, None)


def _dump(name: str) -> dict[str, int]:
    values = {}
    for line in (VECTORS / "dumps" / f"{name}.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        if value.startswith("0x"):
            values[key] = int(value, 16)
    return values


@pytest.mark.parametrize(
    "name",
    ["rsa2048", "rsa4096", "dsa1024", "ecdsa256", "ecdsa384", "ecdsa521", "ed25519", "ed448"],
)
def test_private_numbers_match_puttygens_dump(name: str) -> None:
    key = load_private_key((VECTORS / "ppk" / f"{name}.v3.none.ppk").read_bytes())
    dump = _dump(name)
    p = key.params
    if isinstance(p, RsaParams):
        assert (p.n, p.e, p.d) == (
            dump["public_modulus"],
            dump["public_exponent"],
            dump["private_exponent"],
        )
        assert (p.p, p.q, p.iqmp) == (
            dump["private_p"],
            dump["private_q"],
            dump["private_inverse_q_mod_p"],
        )
        assert p.p > p.q
    elif isinstance(p, DsaParams):
        assert (p.p, p.q, p.g, p.y, p.x) == (
            dump["p"],
            dump["q"],
            dump["g"],
            dump["public_y"],
            dump["private_x"],
        )
    elif isinstance(p, EcdsaParams):
        assert p.k == dump["private_exponent"]
        size = (len(p.point) - 1) // 2
        assert int.from_bytes(p.point[1 : 1 + size], "big") == dump["public_affine_x"]
    else:
        assert isinstance(p, EddsaParams)
        # puttygen prints the EdDSA seed as a little-endian integer (spec §1.3).
        assert int.from_bytes(p.seed, "little") == dump["private_exponent"]


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "openssh/" not in e["file"]], ids=_id)
def test_public_blob_equals_the_openssh_pub_file(entry: dict[str, Any]) -> None:
    stem = str(entry["file"]).removeprefix("ppk/").split(".")[0]
    pub_file = VECTORS / "pub" / f"{stem}.openssh.pub"
    if not pub_file.exists():
        pub_file = VECTORS / "openssh" / f"{stem}.pub"
    pub = parse_public_line(pub_file.read_text())
    key = load_private_key((VECTORS / entry["file"]).read_bytes(), passphrase_of(entry))
    assert key.public_blob == pub.blob
    assert pub.fingerprint == entry["sha256_fingerprint"]


# --- negative fixtures and text-layer rules (spec §1.1) -------------------------------------

NEGATIVE = VECTORS / "ppk" / "negative"


def test_unencrypted_bad_mac_is_a_corrupt_file() -> None:
    data = (NEGATIVE / "ed25519.v3.none.bad-mac.ppk").read_bytes()
    with pytest.raises(KeyFormatError, match="MAC check failed") as info:
        load_private_key(data)
    assert not isinstance(info.value, PassphraseError)


def test_encrypted_bad_mac_with_the_right_passphrase_is_a_corrupt_file() -> None:
    # puttygen says "wrong passphrase" here; sshkit can tell: the key inside is intact.
    data = (NEGATIVE / "ed25519.v3.aes.bad-mac.ppk").read_bytes()
    with pytest.raises(KeyFormatError, match="passphrase is right") as info:
        load_private_key(data, PASSPHRASE)
    assert not isinstance(info.value, PassphraseError)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(data, b"another passphrase")


def test_base64_wrapped_at_76_is_a_format_error() -> None:
    data = (NEGATIVE / "rsa2048.v2.none.wrap76.ppk").read_bytes()
    with pytest.raises(KeyFormatError, match="at most 64 characters"):
        load_private_key(data)


GOOD = (VECTORS / "ppk" / "ed25519.v3.none.ppk").read_bytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"\xef\xbb\xbf" + d, "byte-order mark"),
        (lambda d: d.replace(b"Encryption: none", b"Encryption:none"), "Encryption"),
        (lambda d: d.replace(b"Encryption: none", b"Encryption:  none"), "unknown encryption"),
        (lambda d: d.replace(b"Comment:", b"X-Foo: bar\nComment:"), "Comment"),
        (lambda d: d.replace(b"-File-3", b"-File-4"), "too new"),
        (lambda d: d.replace(b"-File-3", b"-File-1"), "version 1"),
        (lambda d: d.replace(b"ssh-ed25519", b"ssh-ed25518", 1), "unrecognised key type"),
        (lambda d: d.replace(b"Private-Lines: 1\n", b"Private-Lines: 2\n"), "format error"),
        (lambda d: d[: d.index(b"Private-MAC")], "truncated"),
        (lambda d: d.replace(b"fixture\n", b"fixture \n"), "MAC check failed"),
        (
            lambda d: (
                d.replace(b"Private-MAC: ", b"Private-MAC: ").rstrip(b"\n")[:-64]
                + d.rstrip(b"\n")[-64:].upper()
            ),
            "MAC check failed",
        ),
        (lambda d: d.replace(b"Public-Lines: 2\n", b"Public-Lines: x\n"), "Public-Lines"),
    ],
)
def test_text_layer_violations_are_rejected(mutate: Any, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        load_private_key(mutate(GOOD))


def test_base64_line_with_trailing_space_is_rejected() -> None:
    lines = GOOD.split(b"\n")
    lines[4] += b" "
    with pytest.raises(KeyFormatError, match="format error"):
        load_private_key(b"\n".join(lines))


@pytest.mark.parametrize(
    "variant",
    [
        GOOD.replace(b"\n", b"\r\n"),
        GOOD.replace(b"\n", b"\r"),
        GOOD.replace(b"\n", b"\n\r"),
        GOOD.rstrip(b"\n"),
        GOOD + b"anything after the MAC is ignored\n",
        GOOD.replace(b"Comment:", b"\nComment:"),  # one blank line is swallowed, as in PuTTY
    ],
    ids=["crlf", "cr", "lfcr", "no-final-newline", "trailing-junk", "one-blank-line"],
)
def test_putty_tolerated_text_variants_load(variant: bytes) -> None:
    assert load_private_key(variant) == load_private_key(GOOD)


def test_mac_is_hmac_sha256_with_an_empty_key_when_unencrypted() -> None:
    import hmac

    from sshkit.formats import sshwire

    f = ppk.parse_ppk(GOOD)
    data = b"".join(
        sshwire.string(x)
        for x in (b"ssh-ed25519", b"none", f.comment, f.public_blob, f.private_data)
    )
    assert hmac.new(b"", data, hashlib.sha256).hexdigest() == f.mac


def test_argon2_limits_refuse_absurd_parameters() -> None:
    data = (VECTORS / "ppk" / "ed25519.v3.aes.ppk").read_bytes()
    huge = data.replace(b"Argon2-Memory: 8192", b"Argon2-Memory: 4294967295")
    with pytest.raises(KeyFormatError, match="memory"):
        load_private_key(huge, PASSPHRASE)
    short_salt = ppk.Argon2Params(salt=b"1234")
    with pytest.raises(KeyFormatError, match="shorter than 8"):
        short_salt.check()


def test_comment_with_a_line_break_cannot_be_written() -> None:
    key = load_private_key(GOOD).with_comment("two\nlines")
    with pytest.raises(KeyFormatError, match="line break"):
        ppk.encode_ppk(key, version=3)


def test_v3_encryption_needs_argon2_parameters() -> None:
    with pytest.raises(ValueError, match="Argon2"):
        ppk.encode_ppk(load_private_key(GOOD), version=3, passphrase=b"x")


def test_empty_passphrase_means_no_encryption() -> None:
    key = load_private_key(GOOD)
    assert ppk.encode_ppk(key, version=3, passphrase=b"") == GOOD


def test_public_half_is_readable_without_the_passphrase() -> None:
    from sshkit.formats.keys import probe_key_file

    info = probe_key_file((VECTORS / "ppk" / "ed25519.v3.aes.ppk").read_bytes())
    assert info.format == "ppk-v3"
    assert info.encrypted
    assert info.public is not None
    assert info.public.comment == "ed25519 fixture"
    assert info.public.fingerprint == "SHA256:cRw8EuGof3dSGwKDOcoMzDw6uGQa8xEdcQaaLF0zLOs"
