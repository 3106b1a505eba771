"""sshkit.formats.authorized_keys: byte-exact parsing, merging, removal, validation."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sshkit.errors import KeyFormatError, UsageError
from sshkit.formats import authorized_keys as ak
from sshkit.formats.authorized_keys import AuthorizedKeys, LineKind


def _openssh_pub(key: object, comment: str = "") -> str:
    pub = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pub.decode() + (f" {comment}" if comment else "")


@pytest.fixture(scope="module")
def ed_line() -> str:
    return _openssh_pub(ed25519.Ed25519PrivateKey.generate(), "alice@laptop")


@pytest.fixture(scope="module")
def ed_line2() -> str:
    return _openssh_pub(ed25519.Ed25519PrivateKey.generate(), "bob@desk")


@pytest.fixture(scope="module")
def rsa_line() -> str:
    return _openssh_pub(rsa.generate_private_key(65537, 2048), "rsa2048")


def _blob(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


# --- parsing keeps every byte ---------------------------------------------------


def test_round_trip_keeps_every_byte(ed_line: str, ed_line2: str, rsa_line: str) -> None:
    data = (
        b"# managed by hand\r\n"
        b"\n"
        + f'command="echo hi, there",no-pty,from="10.0.0.1,10.0.0.2" {ed_line}\n'.encode()
        + b"   \t\n"
        + f"  {rsa_line}\r\n".encode()
        + b"this is not a key at all\n"
        + f'environment="A=b c"\t{ed_line2}  trailing  spaces '.encode()
    )
    doc = AuthorizedKeys.parse(data)
    assert doc.render() == data
    kinds = [line.kind for line in doc.lines]
    assert kinds == [
        LineKind.COMMENT,
        LineKind.BLANK,
        LineKind.KEY,
        LineKind.BLANK,
        LineKind.KEY,
        LineKind.UNPARSED,
        LineKind.KEY,
    ]
    first, second, third = doc.keys()
    assert first.options == 'command="echo hi, there",no-pty,from="10.0.0.1,10.0.0.2"'
    assert first.blob == _blob(ed_line)
    assert first.comment == "alice@laptop"
    assert second.options is None and second.bits == 2048 and second.comment == "rsa2048"
    assert third.options == 'environment="A=b c"'
    assert third.comment == "bob@desk  trailing  spaces"


def test_escaped_quote_inside_options(ed_line: str) -> None:
    data = f'command="echo \\"a b\\"" {ed_line}\n'.encode()
    (key,) = AuthorizedKeys.parse(data).keys()
    assert key.options == 'command="echo \\"a b\\""'
    assert key.blob == _blob(ed_line)


def test_unterminated_quote_and_junk_are_kept_unparsed(ed_line: str) -> None:
    data = f'command="oops {ed_line}\nssh-ed25519 AAAA!!notbase64\n'.encode()
    doc = AuthorizedKeys.parse(data)
    assert [line.kind for line in doc.lines] == [LineKind.UNPARSED, LineKind.UNPARSED]
    assert doc.render() == data


def test_fingerprint_and_bits_match_ssh_keygen(tmp_path: Path) -> None:
    for kind, bits in (("ed25519", None), ("ecdsa", "384"), ("rsa", "3072")):
        path = tmp_path / f"id_{kind}"
        args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@host", "-f", str(path)]
        if bits:
            args += ["-b", bits]
        subprocess.run(args, check=True)
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(path) + ".pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        (key,) = ak.parse_new_keys((path.parent / f"id_{kind}.pub").read_bytes(), source="x")
        assert key.fingerprint == out[1]
        assert key.bits == int(out[0])
        assert key.comment == "me@host"


# --- merging ------------------------------------------------------------------


def test_merge_adds_only_new_blobs_and_keeps_existing_bytes(ed_line: str, ed_line2: str) -> None:
    existing = f'# mine\r\nrestrict,command="x" {ed_line} old comment\r\n'.encode()
    same_blob_other_comment = ak.parse_new_keys(ed_line.rsplit(" ", 1)[0] + " new", source="a")
    new = ak.parse_new_keys(ed_line2, source="b")
    result = ak.merge(existing, [*same_blob_other_comment, *new])
    assert result.data == existing + ed_line2.encode() + b"\n"
    assert [k.blob for k in result.added] == [_blob(ed_line2)]
    assert [k.blob for k in result.already_present] == [_blob(ed_line)]
    again = ak.merge(result.data, [*same_blob_other_comment, *new])
    assert not again.changed and again.data == result.data


def test_merge_adds_line_break_to_last_line_without_one(ed_line: str, ed_line2: str) -> None:
    existing = ed_line.encode()
    result = ak.merge(existing, ak.parse_new_keys(ed_line2, source="k"))
    assert result.data == existing + b"\n" + ed_line2.encode() + b"\n"


def test_merge_into_empty_file(ed_line: str) -> None:
    result = ak.merge(b"", ak.parse_new_keys(ed_line, source="k"))
    assert result.data == ed_line.encode() + b"\n"


def test_cert_authority_line_is_not_the_same_as_the_key(ed_line: str) -> None:
    existing = f"cert-authority {ed_line}\n".encode()
    result = ak.merge(existing, ak.parse_new_keys(ed_line, source="k"))
    assert len(result.added) == 1
    assert result.data.startswith(existing)


def test_duplicate_new_keys_are_added_once(ed_line: str) -> None:
    keys = ak.parse_new_keys(f"{ed_line}\n{ed_line}\n", source="k")
    assert len(ak.merge(b"", keys).added) == 1


def test_remove_by_fingerprint_drops_every_line_of_that_key(ed_line: str, ed_line2: str) -> None:
    existing = f"# keep\n{ed_line}\nno-pty {ed_line2}\n{ed_line} dup\n".encode()
    fp = ak.fingerprint_sha256(_blob(ed_line))
    result = ak.merge(existing, remove=[fp])
    assert result.data == f"# keep\nno-pty {ed_line2}\n".encode()
    assert len(result.removed) == 2


def test_missing_after_detects_lost_update(ed_line: str, ed_line2: str) -> None:
    (key,) = ak.parse_new_keys(ed_line, source="k")
    assert ak.missing_after(ed_line2.encode(), added=[key], removed=[])
    assert not ak.missing_after(f"{ed_line2}\n{ed_line}\n".encode(), added=[key], removed=[])
    assert ak.missing_after(ed_line.encode(), added=[], removed=[key])


def test_unified_diff_shows_the_added_line(ed_line: str, ed_line2: str) -> None:
    old = f"{ed_line}\n".encode()
    new = ak.merge(old, ak.parse_new_keys(ed_line2, source="k")).data
    diff = ak.unified_diff(old, new, label=".ssh/authorized_keys")
    assert "+" + ed_line2 + "\n" in diff
    assert diff.startswith("--- a/.ssh/authorized_keys\n+++ b/.ssh/authorized_keys\n")
    assert ak.unified_diff(old, old, label="x") == ""


# --- validation of new keys -------------------------------------------------------


@pytest.mark.parametrize(
    "pem",
    [
        lambda k: k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        lambda k: k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        lambda k: b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    ],
)
def test_private_key_is_refused_without_echoing_it(pem: object) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    data = pem(key)  # type: ignore[operator]
    with pytest.raises(KeyFormatError, match="is a private key") as info:
        ak.parse_new_keys(data, source="/home/u/.ssh/id_ed25519")
    text = info.value.message + (info.value.hint or "")
    for chunk in data.decode().splitlines()[1:2]:
        assert chunk[:20] not in text


def test_small_rsa_and_dsa_are_refused_with_reason(tmp_path: Path) -> None:
    small = _openssh_pub(rsa.generate_private_key(65537, 1024))
    with pytest.raises(KeyFormatError, match=r"1024-bit RSA key.*under 2048"):
        ak.parse_new_keys(small, source="--key")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", str(tmp_path / "id_dsa")], check=True
    )
    with pytest.raises(KeyFormatError, match="DSA"):
        ak.parse_new_keys((tmp_path / "id_dsa.pub").read_bytes(), source="k.pub")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ssh-ed25519 AAAA!!!!", "not valid base64"),
        ("ssh-ed25519", "not followed by the key data"),
        ("ssh-rsa " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519").decode(), "not a ssh-rsa"),
        (
            "ssh-ed25519 "
            + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x05short").decode(),
            "wrong length",
        ),
        ("hello world", "not a key type"),
        ('command="x ssh-ed25519 AAAA', "unterminated quote"),
    ],
)
def test_malformed_lines_are_refused_with_reason(text: str, reason: str) -> None:
    with pytest.raises(KeyFormatError, match=reason):
        ak.parse_new_keys(text, source="--key")


def test_rfc4716_and_empty_input_are_refused() -> None:
    with pytest.raises(KeyFormatError, match="RFC 4716") as info:
        ak.parse_new_keys("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n", source="k.pub")
    assert info.value.hint is not None and "ssh-keygen -i" in info.value.hint
    with pytest.raises(KeyFormatError, match="no public key"):
        ak.parse_new_keys("# only a comment\n\n", source="k.pub")


def test_accepts_ecdsa_rsa_and_options(rsa_line: str) -> None:
    ec_line = _openssh_pub(ec.generate_private_key(ec.SECP256R1()), "ec")
    keys = ak.parse_new_keys(f'{ec_line}\nrestrict,command="ls -l" {rsa_line}\n', source="f")
    assert [(k.key_type, k.bits) for k in keys] == [("ecdsa-sha2-nistp256", 256), ("ssh-rsa", 2048)]
    assert keys[1].options == 'restrict,command="ls -l"'


def test_bom_and_crlf_in_a_pub_file_are_tolerated(ed_line: str) -> None:
    (key,) = ak.parse_new_keys(b"\xef\xbb\xbf" + ed_line.encode() + b"\r\n", source="k.pub")
    assert key.blob == _blob(ed_line) and key.comment == "alice@laptop"
    assert ak.merge(b"", [key]).data == ed_line.encode() + b"\n"


def test_normalize_fingerprint() -> None:
    fp = ak.fingerprint_sha256(b"x")
    assert ak.normalize_fingerprint(fp) == fp
    assert ak.normalize_fingerprint(fp.removeprefix("SHA256:")) == fp
    with pytest.raises(UsageError):
        ak.normalize_fingerprint("MD5:aa:bb")


# --- properties ---------------------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_line_text, st.sampled_from(["\n", "\r\n", ""])), max_size=8),
    st.booleans(),
)
def test_any_file_round_trips_and_merge_only_appends(
    lines: list[tuple[str, str]], with_key: bool
) -> None:
    data = "".join(text + end for text, end in lines).encode()
    doc = AuthorizedKeys.parse(data)
    assert doc.render() == data
    key = _openssh_pub(ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32), "k")
    result = ak.merge(data, ak.parse_new_keys(key, source="k") if with_key else [])
    prefix = data if (not data or data.endswith(b"\n") or not result.added) else data + b"\n"
    assert result.data.startswith(prefix)
    assert AuthorizedKeys.parse(result.data).keys()[: len(doc.keys())] == doc.keys()
