"""The `sshkit relay` command line: fast path, light imports, errors on stderr only, the log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sshkit.credentials import read_login
from sshkit.errors import ExitCode
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import make_client
from tests.relay_fakes import FakeTunnelServer

HEAVY = ("typer", "click", "requests", "cryptography", "paramiko", "aiohttp", "rich")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, timeout=60, env=env or dict(os.environ)
    )


def refused_env() -> dict[str, str]:
    """An API-mode login whose endpoint refuses connections at once."""
    return dict(
        os.environ,
        SSHKIT_ENDPOINT="http://127.0.0.1:9",
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY="AKTEST",
        SSHKIT_SECRET_KEY="not-a-real-secret",
    )


def imported_modules(stderr: bytes) -> set[str]:
    """The modules named by `python -X importtime` on `stderr`."""
    return {
        line.split("|")[-1].strip()
        for line in stderr.decode().splitlines()
        if line.startswith("import time:")
    }


def hot_path_offenders(modules: set[str]) -> list[str]:
    """Modules the relay's start-up must not import.

    Besides the heavy libraries: `importlib.metadata` (websockets' version lookup,
    about 13 ms) and any `websockets` module, since importing one runs the package's
    `__init__` and with it that lookup; the relay loads only the C extension
    `websockets.speedups`, by file, which `-X importtime` does not list. Nor
    `dataclasses` (with `inspect`, `ast`, `dis`, `tokenize`: about 5 ms) or `typing`
    (about 2 ms): the relay's classes are `sshkit._record.Record`s and its type-only
    names come from `typing` under TYPE_CHECKING.
    """
    return sorted(
        m
        for m in modules
        if m.split(".")[0] in HEAVY
        or m.split(".")[0] == "websockets"
        or m.startswith("importlib.metadata")
        or m in ("argparse", "urllib.request", "logging", "uuid", "email", "encodings.idna")
        or m in ("dataclasses", "inspect", "ast", "dis", "tokenize", "typing")
    )


def test_relay_imports_only_what_it_needs() -> None:
    proc = run("-X", "importtime", "-m", "sshkit", "relay", "demo", env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    modules = imported_modules(proc.stderr)
    assert "sshkit.relay.handshake" in modules
    assert hot_path_offenders(modules) == []


def test_a_whole_relay_run_imports_only_what_it_needs(tmp_path: Path) -> None:
    # Through the handshake, a greeting on stdout and the close: the data path's
    # imports (the splice module included) count too.
    with FakeTunnelServer().running() as server:
        env = dict(refused_env(), SSHKIT_ENDPOINT=server.endpoint)
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "sshkit", "relay", "greet"],
            input=b"",
            capture_output=True,
            timeout=60,
            env=env,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout == b"HELLO\n"
    modules = imported_modules(proc.stderr)
    assert {"sshkit.relay.handshake", "sshkit.relay.proxy"} <= modules
    assert hot_path_offenders(modules) == []
    # A ws:// tunnel needs no TLS (`ssl` costs about 5 ms) and the signed request's
    # date comes from time.time() (`datetime` costs about 1.5 ms).
    assert {"ssl", "_ssl", "datetime", "_datetime"} & modules == set()


def test_a_proxy_in_the_environment_takes_the_library_path() -> None:
    env = dict(refused_env(), HTTP_PROXY="http://127.0.0.1:9")
    proc = run("-X", "importtime", "-m", "sshkit", "relay", "demo", env=env)
    assert proc.returncode == ExitCode.NETWORK
    assert "websockets.sync.client" in imported_modules(proc.stderr)


def test_errors_are_one_line_on_stderr_and_stdout_stays_empty() -> None:
    proc = run("-m", "sshkit", "relay", "demo", env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "sshkit: error: cannot reach 127.0.0.1: Connection refused"
    ]
    assert b"not-a-real-secret" not in proc.stderr


def test_not_logged_in() -> None:
    proc = run("-m", "sshkit", "relay", "demo")
    assert proc.returncode == ExitCode.CONFIG
    assert proc.stdout == b""
    assert proc.stderr.decode().startswith("sshkit: error: not logged in")


def test_usage_errors() -> None:
    missing = run("-m", "sshkit", "relay")
    assert missing.returncode == ExitCode.USAGE
    assert missing.stderr.decode().splitlines()[0] == (
        "sshkit: error: the following arguments are required: host"
    )
    bad = run("-m", "sshkit", "relay", "--timeout", "0", "demo", env=refused_env())
    assert bad.returncode == ExitCode.USAGE
    assert bad.stdout == b""


def test_help_goes_through_typer() -> None:
    proc = run("-m", "sshkit", "relay", "--help")
    assert proc.returncode == 0
    assert b"ProxyCommand" in proc.stdout
    assert b"--suffix" in proc.stdout
    listing = run("-m", "sshkit", "--help")
    assert re.search(rb"^\s+relay\s", listing.stdout, re.M)
    assert re.search(rb"^\s+forward\s", listing.stdout, re.M)


def test_typer_path_behaves_the_same() -> None:
    # The typer command (used for `sshkit --debug relay`, and by CliRunner) must
    # behave like the fast path.
    code = (
        "import sys; sys.argv = ['sshkit', 'relay', 'demo'];"
        "from sshkit.cli import _register_commands, app;"
        "from sshkit.cli._errors import run_guarded;"
        "_register_commands(); run_guarded(app)"
    )
    proc = run("-c", code, env=refused_env())
    assert proc.returncode == ExitCode.NETWORK
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "sshkit: error: cannot reach 127.0.0.1: Connection refused"
    ]


@pytest.mark.parametrize("mode", ["api", "session"])
@pytest.mark.parametrize("how", ["option", "env"])
def test_log_file_records_events_but_no_secrets(
    emulator_factory: EmulatorFactory, tmp_path: Path, mode: str, how: str
) -> None:
    client = make_client(emulator_factory(), mode, tmp_path)
    log = tmp_path / "relay.log"
    extra = ""
    if how == "option":
        extra = f"--log-file {log}"
    else:
        client.env["SSHKIT_LOG"] = str(log)
    proc = client.run(client.ssh(client.emu.session, "echo logged", extra=extra))
    assert proc.returncode == 0, proc.stderr.decode()
    text = log.read_text()
    assert "websocket open" in text
    assert re.search(r"done: up \d+ B", text)
    assert re.search(r"peak rss \d+ B", text)
    assert log.stat().st_mode & 0o777 == 0o600
    secrets = [client.emu.secret_key, client.emu.password, "Authorization", "Cookie"]
    if mode == "session":
        stored = read_login("default", client.env)
        assert stored is not None and stored.session_id
        secrets.append(stored.session_id)
    for secret in secrets:
        assert secret not in text
    assert "app=sshd" not in text  # the query string is not logged


def typer_relay_command() -> Any:
    """The click command typer builds for `sshkit relay` (typer may vendor click)."""
    import typer.main

    from sshkit.cli import _register_commands, app

    _register_commands()
    return typer.main.get_command(app).commands["relay"]  # type: ignore[attr-defined]


def test_fast_path_and_typer_define_the_same_options() -> None:
    from sshkit.cli._relay_cmd import RELAY_OPTIONS

    command = typer_relay_command()
    # Types are compared by parsing, in test_fast_parser_agrees_with_typer.
    typer_options = {
        p.opts[0]: (p.default, p.help)
        for p in command.params
        if p.param_type_name == "option" and p.opts[0] != "--help"
    }
    table = {o.flag: (o.default, o.help) for o in RELAY_OPTIONS}
    assert typer_options == table
    arguments = [p.name for p in command.params if p.param_type_name == "argument"]
    assert arguments == ["host"]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo"],
        ["--app", "jupyter", "demo"],
        ["--suffix=.bai", "demo.bai", "--timeout", "2.5"],
        ["--profile", "p", "--log-file", "/tmp/x.log", "--", "-odd-name"],
    ],
)
def test_fast_parser_agrees_with_typer(argv: list[str]) -> None:
    from sshkit.cli._relay_cmd import RELAY_OPTIONS, parse_relay_args

    ctx = typer_relay_command().make_context("relay", list(argv))
    rename = {"app_name": "app"}
    from_typer = {rename.get(k, k): v for k, v in ctx.params.items()}
    assert parse_relay_args(argv) == from_typer
    assert set(from_typer) == {"host"} | {o.dest for o in RELAY_OPTIONS}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: host"),
        (["a", "b"], "unrecognized arguments: b"),
        (["--nope", "a"], "unrecognized arguments: --nope"),
        (["a", "--timeout"], "argument --timeout: expected one argument"),
        (["a", "--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
    ],
)
def test_fast_parser_usage_errors(argv: list[str], message: str) -> None:
    from sshkit.cli._relay_cmd import parse_relay_args
    from sshkit.errors import UsageError

    with pytest.raises(UsageError) as info:
        parse_relay_args(argv)
    assert info.value.message == message
