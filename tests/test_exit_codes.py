"""docs/exit-codes.md, row by row: each code is produced the way the table says.

Rows whose cause needs a heavier set-up (a dropped tunnel, a reserved folder name, an
unsafe archive) are pinned by the end-to-end tests named in PINNED_ELSEWHERE; a test
here checks that those tests exist and assert that code.
"""

from __future__ import annotations

import ast
import http.server
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshkit.errors import ExitCode
from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"
ROOT = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"^sshkit: error: \S")


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        env=env,
        cwd=cwd,
    )


def assert_error(proc: subprocess.CompletedProcess[str], code: ExitCode) -> None:
    """Exit `code`, one `sshkit: error:` line (and at most a hint), no traceback."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and ERROR_LINE.match(lines[0]), proc.stderr
    assert all(ln.startswith("sshkit: hint: ") for ln in lines[1:]), proc.stderr
    assert "Traceback" not in proc.stderr


def run_in_pty(
    args: list[str], prompt: str, answer: bytes | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run sshkit with a pseudo-terminal as stdin; once `prompt` shows, type `answer`
    (None: send SIGINT, as Ctrl-C would)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [str(SSHKIT), *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        # A shell's background job starts with SIGINT ignored, which children inherit and
        # Python then leaves ignored: give the child the default a terminal user has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    assert proc.stderr is not None
    err = b""
    deadline = time.monotonic() + 60
    try:
        while prompt.encode() not in err:
            assert time.monotonic() < deadline, err
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, f"sshkit exited before asking {prompt!r}: {err!r}"
                err += chunk
        if answer is None:
            proc.send_signal(signal.SIGINT)
        else:
            os.write(master, answer + b"\n")
        out, rest = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out.decode(), (err + rest).decode()
    )


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A local HTTP server answering every request with a 500 problem+json."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = (
                b'{"type": "https://api.backend.ai/probs/internal-server-error", "title": "boom"}'
            )
            self.send_response(500)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def api_env(endpoint: str, secret: str = "s" * 40) -> dict[str, str]:
    return {
        **os.environ,
        "SSHKIT_ENDPOINT": endpoint,
        "SSHKIT_ENDPOINT_TYPE": "api",
        "SSHKIT_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE",
        "SSHKIT_SECRET_KEY": secret,
    }


def keygen(path: Path, passphrase: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "t", "-f", str(path)],
        check=True,
    )
    return path


# --- one test per row ---------------------------------------------------------------------


def test_0_ok() -> None:
    assert run("--version").returncode == ExitCode.OK


def test_1_an_unexpected_failure_keeps_its_traceback() -> None:
    code = (
        "from sshkit.cli._errors import run_guarded\n"
        "def boom():\n    raise RuntimeError('a bug')\n"
        "run_guarded(boom)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == ExitCode.ERROR
    assert "Traceback" in proc.stderr and "RuntimeError: a bug" in proc.stderr


def test_2_usage() -> None:
    proc = run("to-ppk", "--no-such-option", "k")
    assert proc.returncode == ExitCode.USAGE
    assert "No such option" in proc.stderr


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--endpoint-type", "session"], "--username"),
        (["--endpoint-type", "session", "--username", "me"], "--password-stdin"),
        (["--endpoint-type", "api"], "--access-key"),
        (["--endpoint-type", "api", "--access-key", "AK"], "--password-stdin"),
    ],
)
def test_2_login_without_a_terminal_is_one_line(flags: list[str], names: str) -> None:
    proc = run("login", "--endpoint", "http://127.0.0.1:9", *flags)  # stdin: not a terminal
    assert_error(proc, ExitCode.USAGE)
    assert names in proc.stderr
    assert "Aborted" not in proc.stderr and "Warning" not in proc.stderr


def test_3_config_not_logged_in() -> None:
    assert_error(run("fetch-key", "my-session"), ExitCode.CONFIG)


def test_4_auth(emulator: Emulator) -> None:
    env = {**emulator.sshkit_api_env(), "SSHKIT_SECRET_KEY": "wrong" * 8}
    assert_error(run("whoami", env=env), ExitCode.AUTH)


def test_5_not_found(emulator: Emulator) -> None:
    assert_error(
        run("fetch-key", "no-such-session", env=emulator.sshkit_api_env()), ExitCode.NOT_FOUND
    )


def test_6_server(failing_server: str) -> None:
    assert_error(run("whoami", env=api_env(failing_server)), ExitCode.SERVER)


def test_7_network() -> None:
    assert_error(run("whoami", env=api_env("http://127.0.0.1:9")), ExitCode.NETWORK)


def test_8_key_format(tmp_path: Path) -> None:
    bad = tmp_path / "k"
    bad.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    assert_error(run("to-ppk", str(bad), "-o", str(tmp_path / "k.ppk")), ExitCode.KEY_FORMAT)


def test_9_passphrase(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k", passphrase="right one")
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong one\n")
    proc = run("to-ppk", str(key), "--passphrase-file", str(wrong), "--no-passphrase")
    assert_error(proc, ExitCode.PASSPHRASE)


MACOS_CONFIG = b"""\
Host github.com
  User git

Host *
  AddKeysToAgent yes
  UseKeychain yes
  IdentityFile ~/.ssh/id_ed25519
"""


def test_10_a_config_ssh_already_rejects_is_never_written(
    emulator: Emulator, hermetic_home: Path
) -> None:
    ssh_dir = hermetic_home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    config = ssh_dir / "config"
    config.write_bytes(MACOS_CONFIG)
    before = sorted(p.name for p in ssh_dir.iterdir())
    proc = run("setup-vscode", emulator.session, "--yes", env=emulator.sshkit_api_env())
    assert_error(proc, ExitCode.SSH_CONFIG)
    # The user's own file and line, not a line of an edited copy.
    assert f"{config}, line 6: 'UseKeychain yes'" in proc.stderr
    assert "IgnoreUnknown UseKeychain" in proc.stderr
    assert config.read_bytes() == MACOS_CONFIG
    assert sorted(p.name for p in ssh_dir.iterdir()) == before  # no backup, no key
    # What the hint says works: the same file with IgnoreUnknown first is accepted.
    config.write_bytes(b"IgnoreUnknown UseKeychain\n" + MACOS_CONFIG)
    proc = run("setup-vscode", emulator.session, "--yes", env=emulator.sshkit_api_env())
    assert proc.returncode == ExitCode.OK, proc.stderr


def test_10_an_option_newer_than_this_openssh_names_its_line(
    emulator: Emulator, hermetic_home: Path
) -> None:
    config = hermetic_home / "cfg"
    data = b"Host a\n  HostName a.example\n\nHost b\n  NoSuchOptionAnywhere yes\n"
    config.write_bytes(data)
    proc = run(
        "setup-vscode", emulator.session, "--yes", "--ssh-config", str(config),
        env=emulator.sshkit_api_env(),
    )  # fmt: skip
    assert_error(proc, ExitCode.SSH_CONFIG)
    assert f"{config}, line 5: 'NoSuchOptionAnywhere yes'" in proc.stderr
    assert "IgnoreUnknown" in proc.stderr
    assert config.read_bytes() == data
    assert not list(hermetic_home.glob("cfg*.bak*")) and len(list(hermetic_home.iterdir())) == 1


def test_11_local_file(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    (tmp_path / "k.ppk").write_text("already here")
    assert_error(run("to-ppk", str(key)), ExitCode.LOCAL_FILE)


def test_14_check_failed(tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    key.chmod(0o644)
    assert_error(run("fix-perms", "--check", str(key)), ExitCode.CHECK_FAILED)


def test_16_unknown_host_is_not_10(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host web\n  HostName web.example\n")
    proc = run("hosts", "remove", "nope", "--ssh-config", str(config))
    assert_error(proc, ExitCode.UNKNOWN_HOST)
    assert config.read_text() == "Host web\n  HostName web.example\n"


def _config_with_a_block(tmp_path: Path) -> tuple[Path, bytes]:
    from sshkit.formats.ssh_config import SshConfig
    from tests.test_ssh_config_unit import BLOCK

    config = tmp_path / "config"
    data = SshConfig.parse(b"Host web\n").upsert(BLOCK).render()
    config.write_bytes(data)
    return config, data


def test_17_declined_prompt(tmp_path: Path) -> None:
    config, data = _config_with_a_block(tmp_path)
    alias = next(ln.split()[1] for ln in data.decode().splitlines() if ln.startswith("Host b"))
    proc = run_in_pty(["hosts", "remove", alias, "--ssh-config", str(config)], "changes?", b"n")
    assert proc.returncode == ExitCode.DECLINED, proc.stderr
    assert "sshkit: error: declined" in proc.stderr
    assert config.read_bytes() == data
    # --yes does not ask, even in a terminal.
    proc = run_in_pty(["hosts", "remove", alias, "--ssh-config", str(config), "--yes"], "", b"")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert alias not in config.read_text()


def test_130_interrupted_at_a_prompt() -> None:
    proc = run_in_pty(
        ["login", "--endpoint", "http://127.0.0.1:9", "--endpoint-type", "session"],
        "User name",
        None,
    )
    assert proc.returncode == ExitCode.INTERRUPTED, proc.stderr
    assert "Aborted" not in proc.stderr


def test_debug_prints_the_traceback_and_keeps_the_code_and_hint() -> None:
    plain = run("fetch-key", "my-session")
    debug = run("--debug", "fetch-key", "my-session")
    assert debug.returncode == plain.returncode == ExitCode.CONFIG
    assert "Traceback (most recent call last)" in debug.stderr
    assert "NotLoggedInError" in debug.stderr
    # The same closing lines (message and hint) as without --debug.
    assert debug.stderr.endswith(plain.stderr)
    assert "sshkit: hint: " in plain.stderr


# --- rows pinned by end-to-end tests elsewhere ----------------------------------------------

PINNED_ELSEWHERE = {
    ExitCode.RELAY: (
        "tests/test_relay_e2e.py",
        "test_dropped_websocket_relay_stdout_holds_only_sshd_bytes",
    ),
    ExitCode.REJECTED: (
        "tests/test_authorized_keys_push.py",
        "test_reserved_folder_name_is_explained_and_nothing_is_created",
    ),
    ExitCode.UNSAFE_DOWNLOAD: (
        "tests/test_account_emulator.py",
        "test_unsafe_id_container_in_the_session_is_refused",
    ),
}


def test_every_documented_code_has_a_test_here_or_elsewhere() -> None:
    here = {int(m) for m in re.findall(r"^def test_(\d+)_", Path(__file__).read_text(), re.M)}
    for code in ExitCode:
        assert int(code) in here or code in PINNED_ELSEWHERE, f"no test pins {code!r}"
    for code, (file, name) in PINNED_ELSEWHERE.items():
        tree = ast.parse((ROOT / file).read_text())
        (func,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
        assert f"ExitCode.{code.name}" in ast.unparse(func), (file, name)


def test_every_row_of_the_table_is_an_exit_code() -> None:
    doc = (ROOT / "docs" / "exit-codes.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (\w+) \|", doc, re.M))
    assert rows == {str(int(c)): c.name for c in ExitCode}


def test_every_prompt_goes_through_the_one_prompt_module() -> None:
    """So that a declined question exits 17 and an interrupted one 130 in every command."""
    offenders = []
    for path in sorted((ROOT / "sshkit" / "cli").glob("*.py")):
        if path.name == "_prompt.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "typer"
                and node.attr in ("confirm", "prompt", "Abort")
            ):
                offenders.append(f"{path.name}:{node.lineno} typer.{node.attr}")
    assert not offenders
