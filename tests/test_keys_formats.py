"""Private key loading (openssh-key-v1, PEM, PKCS#8, SEC1), public lines, fingerprints, writer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from sshkit.errors import KeyFormatError, PassphraseError
from sshkit.formats import openssh, sshwire
from sshkit.formats.keys import (
    PublicKey,
    fingerprint_md5,
    fingerprint_sha256,
    load_private_key,
    parse_public_file,
    parse_public_line,
    parse_rfc4716,
    probe_key_file,
)
from tests.ppk_vectors import (
    PASSPHRASE,
    SSH_KEYGEN,
    VECTORS,
    manifest,
    openssh_entries,
    passphrase_of,
)

needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")

SOURCES = openssh_entries()
FORMATS = {
    "-----BEGIN OPENSSH PRIVATE KEY-----": "openssh-key-v1",
    "-----BEGIN RSA PRIVATE KEY-----": "pem-pkcs1",
    "-----BEGIN EC PRIVATE KEY-----": "pem-sec1",
    "-----BEGIN PRIVATE KEY-----": "pkcs8",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----": "pkcs8",
}


def _id(entry: dict[str, Any]) -> str:
    return str(entry["file"])


@pytest.mark.parametrize("entry", SOURCES, ids=_id)
def test_source_keys_load_with_fingerprint_comment_and_format(entry: dict[str, Any]) -> None:
    key = load_private_key((VECTORS / entry["file"]).read_bytes(), passphrase_of(entry))
    assert key.fingerprint == entry["sha256_fingerprint"]
    assert key.source_format == FORMATS[entry["pem_header"]]
    assert key.encrypted == entry["encrypted"]
    if key.source_format == "openssh-key-v1":
        assert key.comment == entry["comment_in_pub"]  # read from inside the file
    else:
        assert key.comment == ""  # PEM holds none
    pub = parse_public_line((VECTORS / entry["public_key_file"]).read_text())
    assert key.public_blob == pub.blob
    assert key.public_line().split()[:2] == pub.line().split()[:2]


@pytest.mark.parametrize("entry", [e for e in SOURCES if e["encrypted"]], ids=_id)
def test_encrypted_sources_refuse_a_wrong_or_missing_passphrase(entry: dict[str, Any]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(data, b"wrong-pass")
    with pytest.raises(PassphraseError, match="passphrase is needed"):
        load_private_key(data, None)


@pytest.mark.parametrize("entry", manifest()["from-ppk"], ids=_id)
def test_puttygen_exports_load_including_the_ec_pem_trap(entry: dict[str, Any]) -> None:
    made_from = load_private_key((VECTORS / entry["made_from"]).read_bytes(), PASSPHRASE)
    key = load_private_key((VECTORS / entry["file"]).read_bytes(), passphrase_of(entry))
    assert key == made_from.with_comment(key.comment)
    if "openssh-new" in entry["file"] or "ed" in entry["file"]:
        assert key.comment == made_from.comment


@needs_ssh_keygen
@pytest.mark.parametrize("name", ["rsa2048", "ecdsa521", "ed25519", "dsa1024", "rsa2048_pkcs1"])
def test_fingerprint_equals_ssh_keygen(name: str) -> None:
    pub = VECTORS / "openssh" / f"{name}.pub"
    out = subprocess.run(
        [SSH_KEYGEN, "-l", "-f", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    md5 = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "md5", "-f", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    key = parse_public_line(pub.read_text())
    bits, fp = out.split()[:2]
    assert (str(key.bits), key.fingerprint) == (bits, fp)
    assert fingerprint_md5(key.blob) == md5.split()[1]


def test_fingerprint_format() -> None:
    assert fingerprint_sha256(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


@pytest.mark.parametrize("path", sorted((VECTORS / "pub").glob("*.pub")), ids=lambda p: p.name)
def test_public_files_openssh_and_rfc4716_agree(path: Path) -> None:
    key = parse_public_file(path.read_bytes())
    twin = path.name.replace(".rfc4716.", ".openssh.").replace(".openssh.", ".openssh.")
    other = parse_public_line((VECTORS / "pub" / twin).read_text())
    assert key == other
    assert key.comment  # both carry the comment


def test_parse_public_line_rules() -> None:
    line = (VECTORS / "openssh" / "ed25519.pub").read_text()
    key = parse_public_line(line)
    assert (key.key_type, key.bits, key.comment) == ("ssh-ed25519", 256, "ed25519 fixture")
    assert key.line() == line.strip()
    assert PublicKey.from_blob(key.blob).line() == " ".join(line.split()[:2])
    with pytest.raises(KeyFormatError, match="expected: type base64"):
        parse_public_line("ssh-ed25519")
    with pytest.raises(KeyFormatError, match="base64"):
        parse_public_line("ssh-ed25519 AAAA!!!! x")
    with pytest.raises(KeyFormatError, match="says 'ssh-rsa'"):
        parse_public_line("ssh-rsa " + line.split()[1])
    with pytest.raises(KeyFormatError, match="unsupported key type"):
        parse_public_line("ssh-foo " + "AAAAB3NzaC1mb28=")
    with pytest.raises(KeyFormatError):
        parse_rfc4716("nothing")


def test_public_key_is_not_a_private_key() -> None:
    with pytest.raises(KeyFormatError, match="public key, not a private key"):
        load_private_key((VECTORS / "openssh" / "ed25519.pub").read_bytes())
    with pytest.raises(KeyFormatError, match="not a recognised"):
        load_private_key(b"hello")


def test_probe_reports_format_and_encryption_without_a_passphrase() -> None:
    enc = probe_key_file((VECTORS / "openssh" / "ed25519_enc").read_bytes())
    assert (enc.format, enc.encrypted, enc.private) == ("openssh-key-v1", True, True)
    assert enc.public is not None and enc.public.comment == ""  # encrypted with the key
    pem = probe_key_file((VECTORS / "openssh" / "rsa2048_pkcs1_enc").read_bytes())
    assert (pem.format, pem.encrypted, pem.public) == ("pem-pkcs1", True, None)
    pub = probe_key_file((VECTORS / "pub" / "ed448.rfc4716.pub").read_bytes())
    assert (pub.format, pub.private) == ("rfc4716-public", False)


def test_repr_never_shows_secrets() -> None:
    key = load_private_key((VECTORS / "openssh" / "rsa2048").read_bytes())
    text = repr(key) + str(key) + repr(key.params)
    assert str(key.params.d) not in text  # type: ignore[union-attr]
    assert "SHA256:" in repr(key)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00000000"),
        (0x80, "000000020080"),
        (0x7F, "000000017f"),
        (0x1234, "000000021234"),
    ],
)
def test_mpint_encoding_rfc4251(value: int, encoded: str) -> None:
    assert sshwire.mpint(value).hex() == encoded
    assert sshwire.Reader(bytes.fromhex(encoded)).mpint() == value


def test_wire_reader_errors_are_key_format_errors() -> None:
    with pytest.raises(KeyFormatError, match="truncated"):
        sshwire.Reader(b"\x00\x00\x00\x05abc").string()
    with pytest.raises(KeyFormatError, match="negative"):
        sshwire.Reader(b"\x00\x00\x00\x01\x80").mpint()


# --- openssh-key-v1 writer -----------------------------------------------------------------

OPENSSH_KEYS = ["rsa2048", "dsa1024", "ecdsa256", "ecdsa384", "ecdsa521", "ed25519"]


@pytest.mark.parametrize("name", OPENSSH_KEYS)
def test_openssh_writer_reproduces_ssh_keygen_files(name: str) -> None:
    # ssh-keygen output is deterministic given the check int: same wrap, padding, comment.
    original = (VECTORS / "openssh" / name).read_bytes()
    key = load_private_key(original)
    raw = openssh._unarmor(original)
    body = sshwire.Reader(raw[len(openssh.MAGIC) :])
    for _ in range(3):
        body.string()
    body.uint32()
    body.string()
    check = int.from_bytes(body.string()[:4], "big")
    assert openssh.encode_openssh(key, check_int=check) == original


@needs_ssh_keygen
@pytest.mark.parametrize("name", OPENSSH_KEYS)
@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_ssh_keygen_loads_what_sshkit_writes(tmp_path: Path, name: str, encrypted: bool) -> None:
    key = load_private_key((VECTORS / "openssh" / name).read_bytes())
    data = openssh.encode_openssh(
        key,
        check_int=0x01020304,
        passphrase=PASSPHRASE if encrypted else None,
        kdf_salt=bytes(range(16)),
        kdf_rounds=4,
    )
    path = tmp_path / "key"
    path.write_bytes(data)
    path.chmod(0o600)
    args = [SSH_KEYGEN, "-y", "-f", str(path)]
    if encrypted:
        args[2:2] = ["-P", PASSPHRASE.decode()]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert out.split() == key.public_line().split()  # ssh-keygen -y prints the comment too
    assert load_private_key(data, PASSPHRASE if encrypted else None) == key


def test_openssh_unsupported_cipher_is_explained() -> None:
    data = (VECTORS / "openssh" / "ed25519_enc").read_bytes()
    raw = openssh._unarmor(data).replace(b"aes256-ctr", b"aes256-xyz")
    import base64

    armored = b"%s\n%s\n%s\n" % (
        openssh.BEGIN.encode(),
        base64.b64encode(raw),
        openssh.END.encode(),
    )
    with pytest.raises(KeyFormatError, match="unsupported cipher 'aes256-xyz'"):
        load_private_key(armored, PASSPHRASE)


@needs_ssh_keygen
@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_every_cipher_ssh_keygen_offers_loads_with_its_comment(tmp_path: Path, kind: str) -> None:
    assert SSH_KEYGEN is not None
    ciphers = subprocess.run(
        ["ssh", "-Q", "cipher"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "chacha20-poly1305@openssh.com" in ciphers
    for cipher in ciphers:
        path = tmp_path / f"{kind}-{cipher}"
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", kind, "-a", "2", "-Z", cipher, "-N", "pass-phrase",
             "-C", f"via {cipher}", "-f", str(path)],
            check=True, capture_output=True,
        )  # fmt: skip
        data = path.read_bytes()
        key = load_private_key(data, b"pass-phrase")
        pub = parse_public_line((tmp_path / f"{kind}-{cipher}.pub").read_text())
        assert (key.public_blob, key.comment) == (pub.blob, f"via {cipher}"), cipher
        with pytest.raises(PassphraseError, match="wrong passphrase"):
            load_private_key(data, b"pass-phrasE")
