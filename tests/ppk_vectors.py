"""Shared access to the PPK/OpenSSH known-answer vectors in tests/vectors/ppk/ (see its README)."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vectors" / "ppk"
PASS_FILE = VECTORS / "pass" / "fixture-pass.txt"
PASSPHRASE = PASS_FILE.read_bytes()
PUTTYGEN = shutil.which("puttygen")
SSH_KEYGEN = shutil.which("ssh-keygen")


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
    return data


def ppk_entries() -> list[dict[str, Any]]:
    return list(manifest()["ppk"])


def openssh_entries() -> list[dict[str, Any]]:
    return list(manifest()["openssh"])


def passphrase_of(entry: dict[str, Any]) -> bytes | None:
    name = entry.get("passphrase_file")
    return (VECTORS / name).read_bytes() if name else None


def private_copy(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    """Copy a key into dest_dir with mode 0600 (git does not keep modes; OpenSSH insists)."""
    dest = dest_dir / (name or src.name)
    dest.write_bytes(src.read_bytes())
    dest.chmod(0o600)
    return dest


def puttygen(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert PUTTYGEN is not None
    return subprocess.run(
        [PUTTYGEN, *map(str, args)], capture_output=True, text=True, timeout=120, check=check
    )


def puttygen_fingerprint(path: Path, *extra: str | Path) -> str:
    """The SHA256 token of `puttygen -l` (for PPK it reads only the public half)."""
    return puttygen(path, "-l", *extra).stdout.split()[2]
