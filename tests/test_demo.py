"""scripts/demo runs to the end and leaves nothing behind: no file, no process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")
def test_demo_runs_to_the_end_and_cleans_up(tmp_path: Path) -> None:
    tmpdir = tmp_path / "demo-tmp"  # the demo makes its sandbox in TMPDIR
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSHKIT_", "BACKEND_"))}
    env["TMPDIR"] = str(tmpdir)
    proc = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for narration in (
        "Logging in",
        "VS Code Remote-SSH",
        "ssh into the session",
        "scp",
        ".ppk",
        "authorized_keys",
        "PuTTY session",
        "doctor",
        "demo finished",
    ):
        assert narration in out, f"missing step: {narration}"
    assert "hello from" in out
    assert "logged in with my own key" in out
    assert list(tmpdir.iterdir()) == [], "the sandbox was not removed"
    assert _processes_mentioning(str(tmpdir)) == [], "a process outlived the demo"
