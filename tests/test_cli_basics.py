"""The CLI's contract: help, version, error translation, cheap imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sshkit import __version__
from sshkit.cli._errors import report
from sshkit.errors import ExitCode, KeyFormatError, SshkitError


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshkit", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"sshkit {__version__}"


def test_help_lists_usage() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
    assert "Backend.AI" in proc.stdout


def test_unknown_command_is_usage_error() -> None:
    proc = run_cli("no-such-command")
    assert proc.returncode == ExitCode.USAGE


def test_report_is_one_line_with_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code = report(KeyFormatError("the key is\ncorrupt", hint="regenerate it"))
    err = capsys.readouterr().err
    assert code == ExitCode.KEY_FORMAT
    assert err.splitlines() == [
        "sshkit: error: the key is corrupt",
        "sshkit: hint: regenerate it",
    ]


def test_every_error_has_a_distinct_documented_code() -> None:
    import inspect

    from sshkit import errors

    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, SshkitError)
    ]
    codes = {c.exit_code for c in classes}
    assert ExitCode.OK not in codes
    doc = (
        __import__("pathlib").Path(__file__).resolve().parent.parent / "docs" / "exit-codes.md"
    ).read_text()
    for code in ExitCode:
        assert f"| {int(code)} " in doc, f"exit code {code!r} is not documented"


def test_importing_cli_stays_light() -> None:
    code = (
        "import sys, sshkit.cli; sshkit.cli._register_commands();"
        "heavy = {'cryptography', 'requests', 'paramiko', 'websockets', 'aiohttp'};"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_help_order_names_existing_command_modules() -> None:
    import pkgutil

    import sshkit.cli

    modules = {i.name for i in pkgutil.iter_modules(sshkit.cli.__path__)}
    assert set(sshkit.cli._HELP_ORDER) <= modules
    proc = run_cli("--help")
    listed = [line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line]
    assert listed[:3] == ["login", "logout", "whoami"]
    assert listed.index("setup-vscode") < listed.index("relay") < listed.index("to-ppk")
