"""`sshkit to-ppk`, `from-ppk`, `key-info` as a user runs them (real processes, real puttygen)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.errors import ExitCode
from sshkit.formats.keys import load_private_key
from tests.ppk_vectors import (
    PASS_FILE,
    PASSPHRASE,
    PUTTYGEN,
    SSH_KEYGEN,
    VECTORS,
    private_copy,
    puttygen,
    puttygen_fingerprint,
)

needs_puttygen = pytest.mark.skipif(PUTTYGEN is None, reason="puttygen is not installed")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")
CHEAP = ["--argon2-memory", "64", "--argon2-passes", "1"]


def sshkit(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key(tmp_path: Path, name: str) -> Path:
    return private_copy(VECTORS / "openssh" / name, tmp_path)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- to-ppk ---------------------------------------------------------------------------------


@needs_puttygen
def test_to_ppk_default_output_is_byte_identical_to_puttygen_and_0600(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519")
    proc = sshkit("to-ppk", src)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "ed25519.ppk"
    assert mode(out) == 0o600
    assert out.read_bytes() == (VECTORS / "ppk" / "ed25519.v3.none.ppk").read_bytes()
    assert "SHA256:cRw8EuGof3dSGwKDOcoMzDw6uGQa8xEdcQaaLF0zLOs" in proc.stdout
    assert puttygen_fingerprint(out) == "SHA256:cRw8EuGof3dSGwKDOcoMzDw6uGQa8xEdcQaaLF0zLOs"


def test_to_ppk_from_pem_uses_puttygens_comment(tmp_path: Path) -> None:
    src = key(tmp_path, "rsa2048_pkcs1")
    out = tmp_path / "k.ppk"
    assert sshkit("to-ppk", src, "-o", out).returncode == 0
    assert out.read_bytes() == (VECTORS / "ppk" / "rsa2048_pkcs1.v3.none.ppk").read_bytes()


@needs_puttygen
def test_to_ppk_keeps_the_input_passphrase(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519_enc")
    out = tmp_path / "k.ppk"
    proc = sshkit("to-ppk", src, "-o", out, "--passphrase-file", PASS_FILE, *CHEAP)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Encryption: aes256-cbc\n" in text
    assert "Key-Derivation: Argon2id\nArgon2-Memory: 64\nArgon2-Passes: 1\n" in text
    export = tmp_path / "export"
    puttygen(out, "--old-passphrase", PASS_FILE, "-O", "private-openssh-new", "-o", export)
    assert load_private_key(export.read_bytes(), PASSPHRASE).comment == "ed25519-enc fixture"


def test_to_ppk_v2_with_the_same_passphrase_matches_puttygen(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519_enc")
    out = tmp_path / "k.ppk"
    proc = sshkit("to-ppk", src, "-o", out, "--ppk-version", "2", "--passphrase-file", PASS_FILE)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (VECTORS / "ppk" / "ed25519_enc.v2.aes.ppk").read_bytes()


def test_to_ppk_no_passphrase_decrypts_like_puttygen(tmp_path: Path) -> None:
    src = key(tmp_path, "rsa2048_enc")
    out = tmp_path / "k.ppk"
    proc = sshkit("to-ppk", src, "-o", out, "--passphrase-file", PASS_FILE, "--no-passphrase")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (VECTORS / "ppk" / "rsa2048_enc.v3.none.ppk").read_bytes()


@needs_puttygen
def test_to_ppk_new_passphrase_kdf_options_and_comment(tmp_path: Path) -> None:
    src = key(tmp_path, "ecdsa384")
    new_pass = write(tmp_path / "new.txt", b"another one")
    out = tmp_path / "k.ppk"
    proc = sshkit(
        "to-ppk", src, "-o", out, "--new-passphrase-file", new_pass, "--comment", "for winscp",
        "--kdf", "argon2i", "--argon2-memory", "1024", "--argon2-passes", "2",
        "--argon2-parallelism", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Comment: for winscp\n" in text
    assert "Key-Derivation: Argon2i\nArgon2-Memory: 1024\nArgon2-Passes: 2\n" in text
    assert "Argon2-Parallelism: 2\n" in text
    assert load_private_key(out.read_bytes(), b"another one").comment == "for winscp"
    export = tmp_path / "export"
    puttygen(out, "--old-passphrase", new_pass, "-O", "private-openssh-new", "-o", export)
    assert load_private_key(export.read_bytes(), b"another one").key_type.endswith("nistp384")


def test_existing_output_is_kept_unless_force(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519")
    out = write(tmp_path / "k.ppk", b"precious")
    proc = sshkit("to-ppk", src, "-o", out)
    assert proc.returncode == ExitCode.LOCAL_FILE
    assert "already exists" in proc.stderr
    assert "--force" in proc.stderr
    assert out.read_bytes() == b"precious"
    proc = sshkit("to-ppk", src, "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"PuTTY-User-Key-File-3: ssh-ed25519\n")
    assert (tmp_path / "k.ppk.sshkit-backup").read_bytes() == b"precious"


@pytest.mark.parametrize("command", ["to-ppk", "from-ppk"])
def test_wrong_passphrase_one_line_error_exit_code_and_no_file(
    tmp_path: Path, command: str
) -> None:
    src = (
        key(tmp_path, "ed25519_enc")
        if command == "to-ppk"
        else private_copy(VECTORS / "ppk" / "ed25519.v3.aes.ppk", tmp_path)
    )
    wrong = write(tmp_path / "wrong.txt", b"not-the-passphrase\n")
    out = tmp_path / "out"
    proc = sshkit(command, src, "-o", out, "--passphrase-file", wrong)
    assert proc.returncode == ExitCode.PASSPHRASE
    assert proc.stderr.splitlines() == [f"sshkit: error: wrong passphrase for {src}"]
    assert proc.stdout == ""
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "home")  # home: hermetic HOME
    assert left == sorted([src.name, "wrong.txt"])


def test_encrypted_key_without_a_passphrase_off_a_terminal(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519_enc")
    proc = sshkit("to-ppk", src)
    assert proc.returncode == ExitCode.PASSPHRASE
    assert "is encrypted" in proc.stderr
    assert "--passphrase-file" in proc.stderr
    assert not (tmp_path / "ed25519_enc.ppk").exists()


def test_corrupt_key_is_a_key_format_error(tmp_path: Path) -> None:
    bad = private_copy(VECTORS / "ppk" / "negative" / "ed25519.v3.none.bad-mac.ppk", tmp_path)
    proc = sshkit("from-ppk", bad, "-o", tmp_path / "out")
    assert proc.returncode == ExitCode.KEY_FORMAT
    assert "MAC check failed" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_usage_errors(tmp_path: Path) -> None:
    src = key(tmp_path, "ed25519")
    empty = write(tmp_path / "empty", b"")
    proc = sshkit("to-ppk", src, "--new-passphrase-file", empty, "--no-passphrase")
    assert proc.returncode == ExitCode.USAGE
    assert sshkit("to-ppk", src, "--ppk-version", "4").returncode == ExitCode.USAGE
    assert sshkit("to-ppk", src, "--kdf", "scrypt").returncode == ExitCode.USAGE
    proc = sshkit("to-ppk", src, "--argon2-memory", "4", "--argon2-parallelism", "1")
    assert proc.returncode == ExitCode.USAGE
    assert "Argon2 memory 4 KiB is out of range" in proc.stderr
    assert not (tmp_path / "ed25519.ppk").exists()


# --- passphrase files ----------------------------------------------------------------------


@needs_puttygen
@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\r"], ids=["none", "lf", "crlf", "cr"])
def test_passphrase_file_trailing_newline_is_dropped_like_puttygen(
    tmp_path: Path, ending: bytes
) -> None:
    pass_file = write(tmp_path / "pass.txt", PASSPHRASE + ending)
    src = key(tmp_path, "ed25519_enc")
    out = tmp_path / "k.ppk"
    proc = sshkit("to-ppk", src, "-o", out, "--passphrase-file", pass_file, *CHEAP)
    assert proc.returncode == 0, proc.stderr
    assert load_private_key(out.read_bytes(), PASSPHRASE).comment == "ed25519-enc fixture"
    # puttygen reads the same file the same way (first line, line ending dropped).
    export = tmp_path / "export"
    puttygen(out, "--old-passphrase", pass_file, "-O", "private-openssh-new", "-o", export)
    assert load_private_key(export.read_bytes(), PASSPHRASE).comment == "ed25519-enc fixture"


@needs_puttygen
def test_multi_line_passphrase_file_is_refused_where_puttygen_would_truncate(
    tmp_path: Path,
) -> None:
    pass_file = write(tmp_path / "pass.txt", PASSPHRASE + b"\nsecond line\n")
    src = private_copy(VECTORS / "ppk" / "ed25519.v3.aes.ppk", tmp_path)
    # puttygen silently uses only the first line ...
    puttygen(src, "--old-passphrase", pass_file, "-O", "private-openssh-new", "-o", tmp_path / "x")
    # ... sshkit refuses the file rather than guess.
    proc = sshkit("from-ppk", src, "-o", tmp_path / "out", "--passphrase-file", pass_file)
    assert proc.returncode == ExitCode.USAGE
    assert "more than one line" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_passphrase_bytes_are_exact(tmp_path: Path) -> None:
    # Spaces and non-ASCII are part of the passphrase; no trimming, no normalisation.
    utf8 = (VECTORS / "pass" / "utf8-pass.txt").read_bytes()
    src = private_copy(VECTORS / "ppk" / "ed25519.v3.aes.utf8pass.ppk", tmp_path)
    ok = write(tmp_path / "ok.txt", utf8)
    spaced = write(tmp_path / "spaced.txt", utf8 + b" ")
    assert sshkit("from-ppk", src, "-o", tmp_path / "a", "--passphrase-file", ok).returncode == 0
    proc = sshkit("from-ppk", src, "-o", tmp_path / "b", "--passphrase-file", spaced)
    assert proc.returncode == ExitCode.PASSPHRASE


# --- from-ppk ------------------------------------------------------------------------------


@needs_ssh_keygen
def test_from_ppk_writes_openssh_key_0600_and_pub_keeping_passphrase_and_comment(
    tmp_path: Path,
) -> None:
    src = private_copy(VECTORS / "ppk" / "ecdsa256.v3.aes.ppk", tmp_path, "work.ppk")
    proc = sshkit("from-ppk", src, "--passphrase-file", PASS_FILE)
    assert proc.returncode == 0, proc.stderr
    out, pub = tmp_path / "work", tmp_path / "work.pub"
    assert (mode(out), mode(pub)) == (0o600, 0o644)
    assert out.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    expected = (VECTORS / "openssh" / "ecdsa256.pub").read_text()
    assert pub.read_text() == expected
    keygen = subprocess.run(
        [SSH_KEYGEN, "-y", "-P", PASSPHRASE.decode(), "-f", str(out)],
        capture_output=True,
        text=True,
    )
    assert keygen.returncode == 0, keygen.stderr
    assert keygen.stdout == expected  # ssh-keygen reads the comment from inside the key
    no_pass = subprocess.run(
        [SSH_KEYGEN, "-y", "-P", "", "-f", str(out)], capture_output=True, text=True
    )
    assert no_pass.returncode != 0  # still encrypted


@needs_ssh_keygen
def test_from_ppk_no_passphrase(tmp_path: Path) -> None:
    src = private_copy(VECTORS / "ppk" / "rsa2048.v2.aes.ppk", tmp_path)
    out = tmp_path / "id_rsa"
    proc = sshkit("from-ppk", src, "-o", out, "--passphrase-file", PASS_FILE, "--no-passphrase")
    assert proc.returncode == 0, proc.stderr
    keygen = subprocess.run(
        [SSH_KEYGEN, "-l", "-f", str(out)], capture_output=True, text=True, check=True
    )
    assert "SHA256:0794jbdsrdHWkbL8WNLzamjxsTqLFb8DYKxIgTod3/8 rsa2048 fixture" in keygen.stdout


def test_from_ppk_refuses_to_overwrite_either_file(tmp_path: Path) -> None:
    src = private_copy(VECTORS / "ppk" / "ed25519.v3.none.ppk", tmp_path, "k.ppk")
    write(tmp_path / "k.pub", b"old pub\n")
    proc = sshkit("from-ppk", src)
    assert proc.returncode == ExitCode.LOCAL_FILE
    assert not (tmp_path / "k").exists()  # nothing written when one of the two exists
    assert (tmp_path / "k.pub").read_bytes() == b"old pub\n"


# --- key-info ------------------------------------------------------------------------------

INFO_CASES = [
    ("ppk/ed25519.v3.aes.ppk", "ppk-v3", True, "ed25519 fixture", 256),
    ("ppk/dsa1024.v2.none.ppk", "ppk-v2", False, "dsa1024 fixture", 1024),
    ("ppk/ed448.v3.none.ppk", "ppk-v3", False, "ed448 fixture", 448),
    ("openssh/rsa4096", "openssh-key-v1", False, "rsa4096 fixture", 4096),
    ("openssh/ecdsa521", "openssh-key-v1", False, "ecdsa521 fixture", 521),
    ("openssh/rsa2048_pkcs1", "pem-pkcs1", False, None, 2048),
    ("openssh/ecdsa256_sec1", "pem-sec1", False, None, 256),
    ("openssh/rsa2048_pkcs8", "pkcs8", False, None, 2048),
    ("pub/ecdsa384.openssh.pub", "openssh-public", False, "ecdsa384 fixture", 384),
    ("pub/ed25519.rfc4716.pub", "rfc4716-public", False, "ed25519 fixture", 256),
]


@pytest.mark.parametrize(
    ("rel", "fmt", "encrypted", "comment", "bits"), INFO_CASES, ids=[c[0] for c in INFO_CASES]
)
def test_key_info_json(
    tmp_path: Path, rel: str, fmt: str, encrypted: bool, comment: str | None, bits: int
) -> None:
    path = private_copy(VECTORS / rel, tmp_path)
    proc = sshkit("key-info", path, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    expected_fp = (
        load_private_key((VECTORS / rel).read_bytes(), PASSPHRASE).fingerprint
        if "pub/" not in rel
        else None
    )
    assert info["format"] == fmt
    assert info["encrypted"] is encrypted
    assert info["comment"] == comment
    assert info["bits"] == bits
    if expected_fp:
        assert info["fingerprint"] == expected_fp


@needs_ssh_keygen
def test_key_info_text_matches_ssh_keygen(tmp_path: Path) -> None:
    path = key(tmp_path, "ecdsa384")
    proc = sshkit("key-info", path)
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split(":", 1) for line in proc.stdout.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    keygen = subprocess.run(
        [SSH_KEYGEN, "-l", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert fields["bits"] == keygen[0]
    assert fields["fingerprint"] == keygen[1]
    assert fields["comment"] == "ecdsa384 fixture"
    assert fields["type"] == "ecdsa-sha2-nistp384"
    assert fields["format"] == "openssh-key-v1"
    assert fields["encrypted"] == "no"


def test_key_info_encrypted_pem_needs_pub_or_passphrase(tmp_path: Path) -> None:
    path = key(tmp_path, "rsa2048_pkcs8_enc")
    proc = sshkit("key-info", path)
    assert proc.returncode == ExitCode.PASSPHRASE
    proc = sshkit("key-info", path, "--passphrase-file", PASS_FILE, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["encrypted"] is True
    (tmp_path / "rsa2048_pkcs8_enc.pub").write_bytes(
        (VECTORS / "openssh" / "rsa2048_pkcs8_enc.pub").read_bytes()
    )
    proc = sshkit("key-info", path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout)["fingerprint"]
        == load_private_key(path.read_bytes(), PASSPHRASE).fingerprint
    )


def test_key_info_encrypted_openssh_takes_the_comment_from_the_pub_file(tmp_path: Path) -> None:
    path = key(tmp_path, "ed25519_enc")
    assert json.loads(sshkit("key-info", path, "--json").stdout)["comment"] is None
    private_copy(VECTORS / "openssh" / "ed25519_enc.pub", tmp_path)
    assert json.loads(sshkit("key-info", path, "--json").stdout)["comment"] == (
        "ed25519-enc fixture"
    )


# --- the prompt --------------------------------------------------------------------------


def test_passphrase_prompt_on_a_terminal_does_not_echo(tmp_path: Path) -> None:
    import pty
    import select

    src = key(tmp_path, "ed25519_enc")
    out = tmp_path / "k.ppk"
    pid, fd = pty.fork()
    if pid == 0:  # child: a session whose controlling terminal is the pty
        os.execv(
            sys.executable,
            [sys.executable, "-m", "sshkit", "to-ppk", str(src), "-o", str(out), *CHEAP],
        )
    seen = b""
    sent = False
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if not sent and b"Passphrase for" in seen:
            os.write(fd, PASSPHRASE + b"\n")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert sent
    assert PASSPHRASE not in seen  # typed without echo
    assert load_private_key(out.read_bytes(), PASSPHRASE).comment == "ed25519-enc fixture"
