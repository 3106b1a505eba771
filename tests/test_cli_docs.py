"""docs/cli.md is generated from the typer app and must match it.

When this fails, regenerate the reference with `scripts/gen-cli-docs` and commit it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "scripts" / "gen-cli-docs"
DOC = ROOT / "docs" / "cli.md"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


# Loads the generator (a script without .py) as a module, optionally changes one
# command's help first, then runs its --check against the committed docs/cli.md.
CHECK = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("gen_cli_docs", {gen!r})
spec = importlib.util.spec_from_loader("gen_cli_docs", loader)
gen = importlib.util.module_from_spec(spec)
loader.exec_module(gen)
{patch}
sys.exit(gen.main(["--check"]))
"""

PATCH_HELP = """
import sshkit.cli
sshkit.cli._register_commands()
from sshkit.cli import export
export.putty.__doc__ = export.putty.__doc__.replace("local proxy", "local proxy (changed)")
"""


def test_cli_reference_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"{proc.stderr.strip()}\n(docs/cli.md differs from the commands' --help; "
        "run `scripts/gen-cli-docs` and commit docs/cli.md)"
    )


def test_check_fails_when_a_command_help_changes() -> None:
    unchanged = run_python(CHECK.format(gen=str(GEN), patch=""))
    assert unchanged.returncode == 0, unchanged.stderr
    changed = run_python(CHECK.format(gen=str(GEN), patch=PATCH_HELP))
    assert changed.returncode == 1
    assert "docs/cli.md is stale" in changed.stderr
    assert "scripts/gen-cli-docs" in changed.stderr


def test_reference_lists_every_command_with_its_usage() -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in ("sshkit export putty", "sshkit export winscp", "sshkit export filezilla"):
        assert f"## `{path}`" in text
        assert f"Usage: {path} [OPTIONS]" in text
    assert "/root" not in text and str(Path.home()) not in text  # no machine-specific paths
