"""Interop with the real puttygen: it loads what sshkit writes, sshkit loads what it writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sshkit.formats import openssh, ppk
from sshkit.formats.keys import PrivateKey, load_private_key
from tests.ppk_vectors import (
    PASS_FILE,
    PASSPHRASE,
    PUTTYGEN,
    SSH_KEYGEN,
    VECTORS,
    openssh_entries,
    passphrase_of,
    puttygen,
    puttygen_fingerprint,
)

pytestmark = pytest.mark.skipif(PUTTYGEN is None, reason="puttygen is not installed")

# Cheap Argon2 for the bulk of the matrix; the defaults are exercised separately.
CHEAP = ppk.Argon2Params("Argon2id", memory_kib=256, passes=2, parallelism=1, salt=b"\x11" * 16)


def _sources() -> list[tuple[str, PrivateKey]]:
    out = []
    for entry in openssh_entries():
        key = load_private_key((VECTORS / entry["file"]).read_bytes(), passphrase_of(entry))
        out.append((entry["file"].removeprefix("openssh/"), key))
    ed448 = load_private_key((VECTORS / "ppk" / "ed448.v3.none.ppk").read_bytes())
    out.append(("ed448", ed448))
    return out


SOURCES = _sources()


def _puttygen_loads(
    path: Path, passphrase: bool, tmp_path: Path, export: str = "private-openssh-new"
) -> PrivateKey:
    """Make puttygen load the private half (which checks the MAC) and export it; read that back."""
    out = tmp_path / "puttygen-export"
    args: list[str | Path] = [path, "-O", export, "-o", out]
    if passphrase:
        args += ["--old-passphrase", PASS_FILE]
    proc = puttygen(*args, check=False)
    assert proc.returncode == 0, proc.stderr
    return load_private_key(out.read_bytes(), PASSPHRASE if passphrase else None)


@pytest.mark.parametrize(("name", "key"), SOURCES, ids=[n for n, _ in SOURCES])
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "aes"])
def test_puttygen_loads_every_ppk_sshkit_writes(
    tmp_path: Path, name: str, key: PrivateKey, version: int, encrypted: bool
) -> None:
    path = tmp_path / f"{name}.ppk"
    path.write_bytes(
        ppk.encode_ppk(
            key.with_comment(f"{name} via sshkit ü"),
            version=version,
            passphrase=PASSPHRASE if encrypted else None,
            argon2=CHEAP,
        )
    )
    assert puttygen_fingerprint(path) == key.fingerprint
    back = _puttygen_loads(path, encrypted, tmp_path)
    assert back == key.with_comment(f"{name} via sshkit ü")


@pytest.mark.parametrize(
    ("flavour", "memory", "passes", "parallelism"),
    [("Argon2i", 1024, 2, 2), ("Argon2d", 1024, 2, 2), ("Argon2id", 4096, 3, 4)],
)
def test_puttygen_accepts_every_argon2_flavour(
    tmp_path: Path, flavour: str, memory: int, passes: int, parallelism: int
) -> None:
    key = dict(SOURCES)["ed25519"]
    params = ppk.Argon2Params(flavour, memory, passes, parallelism, os.urandom(16))
    path = tmp_path / "k.ppk"
    path.write_bytes(ppk.encode_ppk(key, version=3, passphrase=PASSPHRASE, argon2=params))
    assert _puttygen_loads(path, True, tmp_path) == key


def test_puttygen_accepts_the_default_argon2_parameters(tmp_path: Path) -> None:
    from sshkit.services.keyconv import DEFAULT_ARGON2

    key = dict(SOURCES)["rsa2048"]
    params = ppk.Argon2Params(
        DEFAULT_ARGON2.flavour,
        DEFAULT_ARGON2.memory_kib,
        DEFAULT_ARGON2.passes,
        DEFAULT_ARGON2.parallelism,
        os.urandom(16),
    )
    path = tmp_path / "k.ppk"
    path.write_bytes(ppk.encode_ppk(key, version=3, passphrase=PASSPHRASE, argon2=params))
    assert b"Argon2-Passes: 21\n" in path.read_bytes()
    assert _puttygen_loads(path, True, tmp_path) == key


@pytest.mark.parametrize(("name", "key"), SOURCES, ids=[n for n, _ in SOURCES])
def test_puttygen_loads_the_openssh_files_sshkit_writes(
    tmp_path: Path, name: str, key: PrivateKey
) -> None:
    path = tmp_path / name
    path.write_bytes(
        openssh.encode_openssh(
            key, check_int=0xCAFEF00D, passphrase=PASSPHRASE, kdf_salt=os.urandom(16), kdf_rounds=2
        )
    )
    path.chmod(0o600)
    # puttygen decrypts openssh-key-v1 even for -l, so it needs the passphrase here.
    assert puttygen_fingerprint(path, "--old-passphrase", PASS_FILE) == key.fingerprint
    assert _puttygen_loads(path, True, tmp_path, export="private") == key


# --- the other direction: keys puttygen generates now ---------------------------------------

GENERATE = [
    ("rsa", "1024"),
    ("dsa", "1024"),
    ("ecdsa", "256"),
    ("ecdsa", "384"),
    ("ecdsa", "521"),
    ("ed25519", None),
    ("ed448", None),
]


@pytest.mark.parametrize(("kind", "bits"), GENERATE, ids=[f"{k}{b or ''}" for k, b in GENERATE])
def test_sshkit_reads_every_file_puttygen_writes_from_fresh_keys(
    tmp_path: Path, kind: str, bits: str | None
) -> None:
    plain = tmp_path / "plain.ppk"
    args: list[str | Path] = ["-t", kind, "-C", f"fresh {kind} é", "-q", "-o", plain]
    if bits:
        args[2:2] = ["-b", bits]
    args += ["--new-passphrase", VECTORS / "pass" / "empty.txt"]
    puttygen(*args)
    expected = puttygen_fingerprint(plain)
    key = load_private_key(plain.read_bytes())
    assert key.fingerprint == expected
    assert key.comment == f"fresh {kind} é"

    variants: dict[str, list[str | Path]] = {
        "v3-aes": ["--ppk-param", "memory=512,passes=1", "-P"],
        "v3-aes-argon2i": ["--ppk-param", "kdf=argon2i,memory=512,passes=2,parallelism=2", "-P"],
        "v2-aes": ["--ppk-param", "version=2", "-P"],
        "v2-none": ["--ppk-param", "version=2", "--reencrypt"],
    }
    for label, extra in variants.items():
        out = tmp_path / f"{label}.ppk"
        new_pass = ["--new-passphrase", PASS_FILE] if "-P" in extra else []
        puttygen(plain, *extra, *new_pass, "-o", out)
        pw = PASSPHRASE if "aes" in label else None
        assert load_private_key(out.read_bytes(), pw) == key, label

    for fmt in ("private-openssh-new", "private-openssh"):
        out = tmp_path / fmt
        puttygen(plain, "-O", fmt, "-o", out, "--new-passphrase", PASS_FILE, "-P")
        loaded = load_private_key(out.read_bytes(), PASSPHRASE)
        assert loaded.fingerprint == expected, fmt
        assert loaded == key.with_comment(loaded.comment)


@pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")
def test_ppk_to_openssh_is_usable_by_ssh_keygen(tmp_path: Path) -> None:
    for name in ("rsa2048", "ecdsa384", "ed25519", "dsa1024"):
        key = load_private_key((VECTORS / "ppk" / f"{name}.v3.aes.ppk").read_bytes(), PASSPHRASE)
        path = tmp_path / name
        path.write_bytes(openssh.encode_openssh(key, check_int=7))
        path.chmod(0o600)
        import subprocess

        out = subprocess.run(
            [SSH_KEYGEN, "-l", "-f", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert out[1] == key.fingerprint
        assert out[2:4] == [name, "fixture"]  # the comment survived PPK → OpenSSH
