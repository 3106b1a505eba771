"""CLI smoke tests: every command parses and answers, at whatever dependency versions are here.

`scripts/test-lowest` runs this file in a venv holding the lowest versions `pyproject.toml`
allows, so these tests prove the declared minimums work. They need nothing but sshkit,
pytest and OpenSSH's ssh-keygen: no emulator, no network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit import __version__
from sshkit.errors import ExitCode

# The console script of the venv running the tests: what a user of that install runs.
SSHKIT = Path(sys.executable).parent / "sshkit"


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command of the typer app, as argv prefixes."""
    import warnings

    # Some typer releases import names current click deprecates; Python hides a library's
    # DeprecationWarning from users, only pytest's `error` filter would turn it into a failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import typer

        import sshkit.cli

        sshkit.cli._register_commands()
        root = typer.main.get_command(sshkit.cli.app)
    paths: list[tuple[str, ...]] = []

    # typer's own releases vendor click, so look at the group's commands, not its class.
    def walk(cmd: object, prefix: tuple[str, ...]) -> None:
        paths.append(prefix)
        if isinstance(getattr(cmd, "commands", None), dict):
            for name, sub in cmd.commands.items():  # type: ignore[attr-defined]
                walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def test_version() -> None:
    proc = run_cli("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"sshkit {__version__}")


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "sshkit")
def test_every_command_prints_its_own_help(path: tuple[str, ...]) -> None:
    proc = run_cli(*path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: {' '.join(('sshkit', *path))} "), proc.stdout[:200]
    assert "Traceback" not in proc.stdout + proc.stderr
    # typer releases before 0.22 escaped the brackets of defaults with rich_markup_mode=None.
    assert "\\[" not in proc.stdout


def test_unknown_option_is_a_usage_error() -> None:
    proc = run_cli("hosts", "list", "--no-such-option")
    assert proc.returncode == ExitCode.USAGE
    assert "No such option" in proc.stderr


def test_not_logged_in_is_a_config_error() -> None:
    proc = run_cli("fetch-key", "my-session")
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert proc.stderr.startswith("sshkit: error: ")


def test_hosts_list_on_an_empty_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host other\n  HostName example.com\n")
    proc = run_cli("hosts", "list", "--ssh-config", str(config), "--json")
    assert (proc.returncode, proc.stdout.strip()) == (0, "[]")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
@pytest.mark.parametrize("kdf", ["argon2id", "argon2i", "argon2d"])
def test_key_round_trip_through_ppk(tmp_path: Path, kdf: str) -> None:
    """cryptography, bcrypt and the Argon2 flavours (or their fallback) at these versions."""
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "smoke", "-f", str(key)], check=True
    )
    secret = tmp_path / "pass"
    secret.write_text("correct horse\n")
    ppk = tmp_path / "k.ppk"
    proc = run_cli(
        "to-ppk", str(key), "-o", str(ppk), "--new-passphrase-file", str(secret),
        "--kdf", kdf, "--argon2-memory", "64", "--argon2-passes", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    back = tmp_path / "back"
    proc = run_cli("from-ppk", str(ppk), "-o", str(back), "--passphrase-file", str(secret),
                   "--no-passphrase")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = run_cli("key-info", str(back), "--json")
    original = run_cli("key-info", str(key), "--json")
    assert info.returncode == 0, info.stderr
    assert '"fingerprint"' in info.stdout
    assert info.stdout == original.stdout.replace(str(key), str(back))


def test_help_imports_nothing_heavy() -> None:
    """`sshkit --help` runs on every Tab and every curious user: no network, crypto or
    pydantic (which typer would import for its completion flags) is loaded for it."""
    code = (
        "import atexit, sys\n"
        "heavy = ('pydantic', 'rich', 'requests', 'cryptography', 'paramiko', 'websockets')\n"
        "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(sorted(\n"
        "    m for m in sys.modules if m.split('.')[0] in heavy)) + '\\n'))\n"
        "sys.argv = ['sshkit', '--help']\n"
        "from sshkit.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: sshkit ")
    assert proc.stderr.strip() == "LOADED", proc.stderr
