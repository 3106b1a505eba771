"""Key files and options a user or an attacker may hand sshkit (issue 14, items 6, 16, 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sshkit.errors import ExitCode, KeyFormatError
from sshkit.formats import ppk
from sshkit.formats.keys import load_private_key
from sshkit.services.keyconv import read_passphrase_file

SSHKIT = Path(sys.executable).parent / "sshkit"
FAST = ppk.Argon2Params("Argon2id", 8192, 1, 1, bytes(16))


def sshkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def keygen(path: Path, comment: str = "c") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def ppk_with_argon2(tmp_path: Path, memory_kib: int, passes: int) -> Path:
    """An encrypted PPK v3 whose header asks for `memory_kib` × `passes` (MAC not valid)."""
    key = load_private_key(keygen(tmp_path / "k").read_bytes())
    data = ppk.encode_ppk(key, passphrase=b"pw", argon2=FAST)
    data = data.replace(b"Argon2-Memory: 8192", b"Argon2-Memory: %d" % memory_kib)
    data = data.replace(b"Argon2-Passes: 1\n", b"Argon2-Passes: %d\n" % passes)
    out = tmp_path / "hostile.ppk"
    out.write_bytes(data)
    return out


# ------------------------------------------------------------------ 6: Argon2 bounds


@pytest.mark.parametrize(
    ("memory", "passes"),
    [(4 * 1024 * 1024, 10_000), (2 * 1024 * 1024, 1), (1024 * 1024, 17), (262144, 65)],
)
def test_argon2_beyond_the_default_bounds_is_refused(memory: int, passes: int) -> None:
    with pytest.raises(KeyFormatError, match=r"beyond sshkit.s limits") as info:
        replace(FAST, memory_kib=memory, passes=passes).check()
    assert "allow-expensive-kdf" in (info.value.hint or "")
    replace(FAST, memory_kib=memory, passes=passes).check(allow_expensive=True)


@pytest.mark.parametrize(("memory", "passes"), [(8192, 21), (1024 * 1024, 16), (65536, 256)])
def test_argon2_within_the_bounds_is_accepted(memory: int, passes: int) -> None:
    replace(FAST, memory_kib=memory, passes=passes).check()


def test_hostile_ppk_is_refused_before_deriving(tmp_path: Path) -> None:
    hostile = ppk_with_argon2(tmp_path, 4 * 1024 * 1024, 10_000)
    (tmp_path / "pw").write_text("pw\n")
    start = time.monotonic()
    proc = sshkit("from-ppk", hostile, "--passphrase-file", tmp_path / "pw")
    assert proc.returncode == ExitCode.KEY_FORMAT, proc.stderr
    assert "--allow-expensive-kdf" in proc.stderr
    assert time.monotonic() - start < 30


def test_to_ppk_big_argon2_needs_the_option(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    (tmp_path / "pw").write_text("pw\n")
    args = ["to-ppk", key, "--new-passphrase-file", tmp_path / "pw", "-o", tmp_path / "o.ppk"]
    proc = sshkit(*args, "--argon2-memory", str(2 * 1024 * 1024), "--argon2-passes", "1")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert not (tmp_path / "o.ppk").exists()


def test_ctrl_c_ends_a_derivation_at_once(tmp_path: Path) -> None:
    # 1 GiB × 16 passes: within the default bounds, and many seconds of work here.
    hostile = ppk_with_argon2(tmp_path, 1024 * 1024, 16)
    (tmp_path / "pw").write_text("pw\n")
    proc = subprocess.Popen(
        [str(SSHKIT), "from-ppk", str(hostile), "--passphrase-file", str(tmp_path / "pw")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # imports, then the derivation has started
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert took < 5, took  # today: the whole derivation runs first


# ------------------------------------------------------- 16: PowerShell passphrase files


@pytest.mark.parametrize(
    "raw",
    [
        "\ufeffsecret\r\n".encode("utf-16-le"),  # PowerShell 5.1 `echo secret > f`
        "\ufeffsecret\r\n".encode("utf-16-be"),
        b"\xef\xbb\xbfsecret\r\n",  # -Encoding utf8
        b"secret\n",
    ],
)
def test_passphrase_file_encodings(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "pass.txt"
    path.write_bytes(raw)
    assert read_passphrase_file(path) == b"secret"


def test_utf16_non_ascii_passphrase_becomes_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pass.txt"
    path.write_bytes("\ufeffpässwörd\r\n".encode("utf-16-le"))
    assert read_passphrase_file(path) == "pässwörd".encode()


# ----------------------------------------------------------------- 17: comments


def test_comment_with_a_newline_is_a_usage_error(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    proc = sshkit("to-ppk", key, "--comment", "a\nb", "-o", tmp_path / "o.ppk")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert not (tmp_path / "o.ppk").exists()


def test_pub_with_empty_comment_matches_ssh_keygen_and_puttygen(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", comment="")
    expected = (tmp_path / "k.pub").read_bytes()
    assert expected.endswith(b" \n")  # ssh-keygen writes the separator before the empty comment
    ppk_file = tmp_path / "k.ppk"
    assert sshkit("to-ppk", key, "--comment", "", "-o", ppk_file).returncode == 0
    proc = sshkit("from-ppk", ppk_file, "-o", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back.pub").read_bytes() == expected
    puttygen = subprocess.run(
        ["puttygen", str(ppk_file), "-O", "public-openssh", "-o", str(tmp_path / "pg.pub")],
        capture_output=True,
    )
    if puttygen.returncode == 0:
        assert (tmp_path / "pg.pub").read_bytes() == expected
