"""`sshkit hosts list/remove` on files (prune is tested with the emulator in test_doctor.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sshkit.errors import ExitCode
from sshkit.formats.ssh_config import SshConfig
from tests.test_ssh_config_unit import BLOCK, WILD

SSHKIT = Path(sys.executable).parent / "sshkit"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "cfg"
    path.write_bytes(data)
    return path


def test_list_json_and_table(tmp_path: Path) -> None:
    original = b"Host web\n  HostName w\n"
    cfg = write(tmp_path, SshConfig.parse(original).upsert(BLOCK).upsert(WILD).render())
    proc = run("hosts", "list", "--json", "--ssh-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(d["alias"], d["session"], d["config"], d["kind"]) for d in data] == [
        ("bai-vscode", "demo", str(cfg), "alias"),
        ("*.bai", None, str(cfg), "wildcard"),
    ]
    assert data[0]["proxy_command"] == "/usr/bin/sshkit relay -- %h"
    table = run("hosts", "list", "--ssh-config", str(cfg)).stdout
    assert "bai-vscode" in table and "*.bai" in table


def test_list_missing_file_is_empty(tmp_path: Path) -> None:
    proc = run("hosts", "list", "--json", "--ssh-config", str(tmp_path / "nope"))
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert "manages no hosts" in run("hosts", "list", "--ssh-config", str(tmp_path / "n")).stdout


def test_remove_one_then_the_other(tmp_path: Path) -> None:
    original = b"Host bai-vscode\n  Port 49335\nHost web\n  HostName w"
    edited = SshConfig.parse(original).upsert(BLOCK).upsert(WILD).disable_handwritten("bai-vscode")
    cfg = write(tmp_path, edited.render())
    os.chmod(cfg, 0o640)
    assert run("hosts", "remove", "*.bai", "--ssh-config", str(cfg)).returncode == 0
    assert b"*.bai" not in cfg.read_bytes()
    assert b"#sshkit-disabled bai-vscode:" in cfg.read_bytes()
    assert run("hosts", "remove", "bai-vscode", "--ssh-config", str(cfg)).returncode == 0
    assert cfg.read_bytes() == original
    assert cfg.stat().st_mode & 0o777 == 0o640


def test_remove_unknown_alias_changes_nothing(tmp_path: Path) -> None:
    data = SshConfig.parse(b"Host web\n").upsert(BLOCK).render()
    cfg = write(tmp_path, data)
    proc = run("hosts", "remove", "nope", "--ssh-config", str(cfg))
    assert proc.returncode == ExitCode.UNKNOWN_HOST  # not 10: the config itself is fine
    assert "sshkit manages no host 'nope'" in proc.stderr
    assert cfg.read_bytes() == data


def test_remove_refuses_broken_markers(tmp_path: Path) -> None:
    data = b"# BEGIN SSHKIT bai-vscode\nHost bai-vscode\n  HostName x\nHost web\n"
    cfg = write(tmp_path, data)
    proc = run("hosts", "remove", "bai-vscode", "--ssh-config", str(cfg))
    assert proc.returncode == 10
    assert "no end marker" in proc.stderr and "sshkit changed nothing" in proc.stderr
    assert cfg.read_bytes() == data
