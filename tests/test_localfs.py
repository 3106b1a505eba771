"""The local-filesystem edge: atomic writes with the final mode, backups, private dirs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sshkit import localfs
from sshkit.errors import LocalFileError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_gives_every_missing_parent_the_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / ".ssh" / "sshkit" / "default"
        assert localfs.ensure_private_dir(target) is True
    finally:
        os.umask(old)
    for item in (target, target.parent, target.parent.parent):
        assert mode(item) == 0o700, item
    assert localfs.ensure_private_dir(target) is False


def test_private_dir_leaves_existing_dirs_alone(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    localfs.ensure_private_dir(existing / "mine")
    assert mode(existing) == 0o755
    assert mode(existing / "mine") == 0o700


def test_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(LocalFileError, match="cannot create directory"):
        localfs.ensure_private_dir(tmp_path / "f" / "sub")


def test_atomic_write_has_the_final_mode_and_keeps_an_existing_mode(tmp_path: Path) -> None:
    key = tmp_path / "key"
    localfs.atomic_write(key, b"secret")
    assert mode(key) == 0o600
    cfg = tmp_path / "config"
    cfg.write_text("old")
    os.chmod(cfg, 0o640)
    localfs.atomic_write(cfg, b"new")
    assert (mode(cfg), cfg.read_bytes()) == (0o640, b"new")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_through_a_symlink_replaces_the_target(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config"
    real.parent.mkdir()
    real.write_text("a")
    link = tmp_path / "config"
    link.symlink_to(real)
    localfs.atomic_write(link, b"b")
    assert link.is_symlink()
    assert real.read_bytes() == b"b"


def test_atomic_write_failure_leaves_the_original(tmp_path: Path) -> None:
    missing_dir = tmp_path / "nope" / "file"
    with pytest.raises(LocalFileError, match="cannot write"):
        localfs.atomic_write(missing_dir, b"x")


def test_backup_once_keeps_the_first_backup(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("original")
    os.chmod(cfg, 0o644)
    first = localfs.backup_once(cfg)
    assert first is not None and first.read_text() == "original" and mode(first) == 0o644
    cfg.write_text("changed")
    assert localfs.backup_once(cfg) is None
    assert first.read_text() == "original"
    assert localfs.backup_once(tmp_path / "absent") is None
