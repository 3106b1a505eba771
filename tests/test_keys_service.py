"""The key conversion service as other commands call it (`write_ppk`), and the Argon2 back ends."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sshkit.errors import KeyFormatError, LocalFileError, PassphraseError, UsageError
from sshkit.formats import ppk
from sshkit.formats.keys import load_private_key
from sshkit.services import keyconv
from tests.ppk_vectors import PASSPHRASE, VECTORS, private_copy


def test_write_ppk_beside_the_key_with_the_documented_defaults(tmp_path: Path) -> None:
    src = private_copy(VECTORS / "openssh" / "ed25519", tmp_path, "id_container")
    out = keyconv.write_ppk(src)
    assert out == tmp_path / "id_container.ppk"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes() == (VECTORS / "ppk" / "ed25519.v3.none.ppk").read_bytes()
    with pytest.raises(LocalFileError, match="already exists"):
        keyconv.write_ppk(src)
    assert keyconv.write_ppk(src, force=True, version=2) == out
    assert out.read_bytes() == (VECTORS / "ppk" / "ed25519.v2.none.ppk").read_bytes()


def test_write_ppk_passphrase_rules(tmp_path: Path) -> None:
    src = private_copy(VECTORS / "openssh" / "ecdsa384_enc", tmp_path)
    with pytest.raises(PassphraseError, match="is encrypted"):
        keyconv.write_ppk(src)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        keyconv.write_ppk(src, passphrase=b"nope")
    kept = keyconv.write_ppk(src, tmp_path / "kept.ppk", passphrase=PASSPHRASE)
    assert load_private_key(kept.read_bytes(), PASSPHRASE).encrypted
    assert b"Argon2-Passes: 21\n" in kept.read_bytes()  # the default parameters
    clear = keyconv.write_ppk(
        src, tmp_path / "clear.ppk", passphrase=PASSPHRASE, new_passphrase=b""
    )
    assert clear.read_bytes() == (VECTORS / "ppk" / "ecdsa384_enc.v3.none.ppk").read_bytes()
    other = keyconv.write_ppk(
        src, tmp_path / "other.ppk", passphrase=PASSPHRASE, new_passphrase=b"other", version=2
    )
    assert load_private_key(other.read_bytes(), b"other").comment == "ecdsa384-enc fixture"


def test_unencrypted_input_gets_a_new_passphrase_and_a_fresh_salt(tmp_path: Path) -> None:
    src = private_copy(VECTORS / "openssh" / "ed25519", tmp_path)
    a = keyconv.write_ppk(src, tmp_path / "a.ppk", new_passphrase=b"pw")
    b = keyconv.write_ppk(src, tmp_path / "b.ppk", new_passphrase=b"pw")
    salts = [ppk.parse_ppk(p.read_bytes()).argon2 for p in (a, b)]
    assert salts[0] is not None and salts[1] is not None
    assert len(salts[0].salt) == 16
    assert salts[0].salt != salts[1].salt
    assert load_private_key(a.read_bytes(), b"pw") == load_private_key(b.read_bytes(), b"pw")


def test_ask_passphrase_is_called_only_when_needed(tmp_path: Path) -> None:
    asked: list[str] = []

    def ask(question: str) -> bytes:
        asked.append(question)
        return PASSPHRASE

    plain = private_copy(VECTORS / "openssh" / "ed25519", tmp_path)
    keyconv.convert_to_ppk(plain, ask_passphrase=ask)
    assert asked == []
    enc = private_copy(VECTORS / "ppk" / "ed25519.v3.aes.ppk", tmp_path, "enc.ppk")
    result = keyconv.convert_from_ppk(enc, ask_passphrase=ask)
    assert len(asked) == 1 and str(enc) in asked[0]
    assert result.encrypted  # the typed passphrase is kept
    assert result.public_path == tmp_path / "enc.pub"


def test_default_paths() -> None:
    assert keyconv.default_ppk_path(Path("/k/id_ed25519")) == Path("/k/id_ed25519.ppk")
    assert keyconv.default_ppk_path(Path("/k/server.pem")) == Path("/k/server.ppk")
    assert keyconv.default_ppk_path(Path("/k/my.host")) == Path("/k/my.host.ppk")
    assert keyconv.default_openssh_path(Path("/k/id.ppk")) == Path("/k/id")
    assert keyconv.default_openssh_path(Path("/k/id")) == Path("/k/id.openssh")


def test_passphrase_file_reading(tmp_path: Path) -> None:
    f = tmp_path / "p"
    for content, expected in [
        (b"secret", b"secret"),
        (b"secret\n", b"secret"),
        (b"secret\r\n", b"secret"),
        (b" secret \n", b" secret "),
        (b"", b""),
        (b"\n", b""),
    ]:
        f.write_bytes(content)
        assert keyconv.read_passphrase_file(f) == expected
    f.write_bytes(b"secret\n\n")
    with pytest.raises(UsageError, match="more than one line"):
        keyconv.read_passphrase_file(f)
    with pytest.raises(LocalFileError, match="does not exist"):
        keyconv.read_passphrase_file(tmp_path / "missing")


# --- Argon2 back ends --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ed25519.v3.aes.argon2i.ppk", "ed25519.v3.aes.argon2d.ppk", "ecdsa256.v3.aes.argon2id-p4.ppk"],
)
def test_argon2_cffi_fallback_gives_the_same_keys(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.kdf import argon2 as c_argon2

    data = (VECTORS / "ppk" / name).read_bytes()
    with_cryptography = load_private_key(data, PASSPHRASE)

    def unsupported(*args: object, **kwargs: object) -> None:
        raise UnsupportedAlgorithm("pretend OpenSSL < 3.2")

    # What an older cryptography (or one linked to an old OpenSSL) looks like.
    monkeypatch.setattr(c_argon2, "Argon2id", unsupported)
    monkeypatch.delattr(c_argon2, "Argon2i")
    monkeypatch.delattr(c_argon2, "Argon2d")
    assert load_private_key(data, PASSPHRASE) == with_cryptography
    params = ppk.parse_ppk(data).argon2
    assert params is not None
    key = with_cryptography
    assert ppk.encode_ppk(key, version=3, passphrase=PASSPHRASE, argon2=params) == data


def test_without_either_argon2_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.kdf import argon2 as c_argon2

    def unsupported(*args: object, **kwargs: object) -> None:
        raise UnsupportedAlgorithm("pretend OpenSSL < 3.2")

    real_import = builtins.__import__

    def no_argon2_cffi(name: str, *args: object, **kwargs: object) -> object:
        if name == "argon2" or name.startswith("argon2."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(c_argon2, "Argon2id", unsupported)
    monkeypatch.setattr(builtins, "__import__", no_argon2_cffi)
    data = (VECTORS / "ppk" / "ecdsa256.v3.aes.argon2id-p4.ppk").read_bytes()
    with pytest.raises(KeyFormatError) as info:
        load_private_key(data, PASSPHRASE)
    assert "Argon2id" in info.value.message
    assert info.value.hint is not None and "sshkit[argon2]" in info.value.hint
