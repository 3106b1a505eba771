"""One API client per command, closed on the way out, also when the command fails.

The commands run in this process (the console script's own entry: `run_guarded` around the
click command) against the emulator, with `requests.Session` replaced by a subclass that
records each session opened and closed. Also: a malformed server answer is one error line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sshkit.errors import ExitCode
from sshkit.formats.ssh_config import SshConfig
from tests.api_fakes import FakeAdapter, Reply
from tests.emulator_fixture import Emulator
from tests.test_ssh_config_unit import BLOCK, WILD


@dataclass
class Ledger:
    """Every `requests.Session` the command opened, and those it closed."""

    opened: list[requests.Session] = field(default_factory=list)
    closed: list[requests.Session] = field(default_factory=list)

    @property
    def left_open(self) -> int:
        return sum(1 for s in self.opened if not any(s is c for c in self.closed))


def counting_session(
    ledger: Ledger, handler: Callable[[requests.PreparedRequest], Reply] | None = None
) -> type[requests.Session]:
    class CountingSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            ledger.opened.append(self)
            if handler is not None:
                adapter = FakeAdapter(handler)
                self.mount("http://", adapter)
                self.mount("https://", adapter)

        def mount(self, prefix: str, adapter: Any) -> None:
            # A scripted server: the client's own adapters would reach the network.
            if handler is None or isinstance(adapter, FakeAdapter):
                super().mount(prefix, adapter)

        def close(self) -> None:
            ledger.closed.append(self)
            super().close()

    return CountingSession


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    ledger: Ledger


@pytest.fixture
def sshkit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Outcome]]:
    """Run `sshkit ARGS...` in this process; count the HTTP sessions it opens and closes."""
    from sshkit.cli import _register_commands
    from sshkit.cli._app import command
    from sshkit.cli._errors import run_guarded

    _register_commands()

    def run(
        *args: str, handler: Callable[[requests.PreparedRequest], Reply] | None = None
    ) -> Outcome:
        ledger = Ledger()
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(requests, "Session", counting_session(ledger, handler))
            with pytest.raises(SystemExit) as info:
                run_guarded(lambda: command().main(args=list(args), prog_name="sshkit"))
        out, err = capsys.readouterr()
        code = info.value.code
        return Outcome(code if isinstance(code, int) else 1, out, err, ledger)

    yield run


@pytest.fixture
def logged_in(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for key, value in {
        "SSHKIT_ENDPOINT": emulator.manager_url,
        "SSHKIT_ENDPOINT_TYPE": "api",
        "SSHKIT_ACCESS_KEY": emulator.access_key,
        "SSHKIT_SECRET_KEY": emulator.secret_key,
    }.items():
        monkeypatch.setenv(key, value)
    return emulator


def public_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " lifetime-test"


def one_client(result: Outcome, code: int = 0) -> None:
    """The command exited with `code`, having opened exactly one client and closed it."""
    assert result.code == code, result.stderr
    assert len(result.ledger.opened) == 1, result.ledger
    assert result.ledger.left_open == 0


def test_commands_open_one_client_and_close_it(
    logged_in: Emulator, sshkit: Callable[..., Outcome], tmp_path: Path
) -> None:
    session = logged_in.session
    config = tmp_path / "ssh_config"
    one_client(sshkit("whoami"))
    # The export needs the server only to download the missing key.
    one_client(sshkit("export", "winscp", session, "-o", str(tmp_path / "w.ini")))
    one_client(sshkit("fetch-key", session))
    # setup-vscode used to open one client for the session check and one for the key.
    one_client(sshkit("setup-vscode", session, "--ssh-config", str(config), "--yes"))
    one_client(sshkit("hosts", "prune", "--ssh-config", str(config), "--yes"))
    one_client(
        sshkit("doctor", "no-such-alias", "--ssh-config", str(config)), ExitCode.CHECK_FAILED
    )
    one_client(sshkit("push-authorized-keys", "--key", public_line(), "--dry-run"))
    one_client(sshkit("authorized-keys", "list", "--session", session))
    if shutil.which("ssh"):
        # The client is closed before ssh runs (ssh's relay is a process of its own).
        one_client(sshkit("ssh", session, "--user", logged_in.ssh_user, "--", "true"))


def test_an_export_that_needs_no_download_opens_no_client(
    logged_in: Emulator, sshkit: Callable[..., Outcome], tmp_path: Path
) -> None:
    one_client(sshkit("fetch-key", logged_in.session))
    result = sshkit("export", "putty", logged_in.session, "-o", str(tmp_path / "p.reg"))
    assert result.code == 0, result.stderr
    assert result.ledger.opened == []


def test_failing_commands_close_their_client(
    logged_in: Emulator, sshkit: Callable[..., Outcome], tmp_path: Path
) -> None:
    missing = "no-such-session"
    config = tmp_path / "ssh_config"
    for args in [
        ("fetch-key", missing),
        ("setup-vscode", missing, "--ssh-config", str(config), "--yes"),
        ("ssh", missing, "--", "true"),
        ("scp", f"{missing}:x", str(tmp_path / "x")),
        ("export", "putty", missing, "-o", str(tmp_path / "p.reg")),
        ("authorized-keys", "list", "--session", missing),
        ("authorized-keys", "list", "--folder", "no-such-folder"),
    ]:
        if args[0] in ("ssh", "scp") and not shutil.which(args[0]):
            continue
        result = sshkit(*args)
        assert result.code == ExitCode.NOT_FOUND, (args, result.stderr)
        assert len(result.ledger.opened) == 1 and result.ledger.left_open == 0, args
    assert not config.exists()
    # A refusal after the server was asked: prune of a gone session, off a terminal.
    config.write_bytes(SshConfig([]).upsert(BLOCK).render())
    result = sshkit("hosts", "prune", "--ssh-config", str(config))
    one_client(result, ExitCode.USAGE)
    assert "session demo no longer exists" in result.stdout


def test_refused_credentials_close_the_client(
    logged_in: Emulator, sshkit: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSHKIT_SECRET_KEY", "not-the-secret")
    for args in [("whoami",), ("fetch-key", logged_in.session)]:
        one_client(sshkit(*args), ExitCode.AUTH)


def test_an_interrupted_command_closes_its_client(
    logged_in: Emulator, sshkit: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(client: Any, session: str) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr("sshkit.services.account.download_container_key", interrupted)
    one_client(sshkit("fetch-key", logged_in.session), ExitCode.INTERRUPTED)


def test_no_login_opens_nothing(sshkit: Callable[..., Outcome], tmp_path: Path) -> None:
    for args in [("fetch-key", "s1"), ("whoami",), ("ssh", "s1"), ("hosts", "prune")]:
        result = sshkit(*args)
        assert result.code == ExitCode.CONFIG, (args, result.stderr)
        assert result.ledger.opened == []


# ------------------------------------------------------------------ malformed answers

HELLO = {"version": "v9.20250722", "manager": "26.8.0"}


def malformed(path: str, body: Any) -> Callable[[requests.PreparedRequest], Reply]:
    """A server that answers `path` with `body` and everything else sensibly."""

    def handler(req: requests.PreparedRequest) -> Reply:
        url = req.path_url.split("?")[0]
        if url == "/":
            return Reply(200, HELLO)
        if url == path:
            return Reply(200, body)
        if url.endswith("/apps"):
            return Reply(200, [{"name": "sshd", "protocol": "tcp", "ports": [2200]}])
        if url.startswith("/session/"):
            return Reply(200, {"status": "RUNNING"})
        if url == "/auth/role":
            return Reply(200, {"global_role": "user"})
        return Reply(404, {"title": "not here"})

    return handler


@pytest.mark.parametrize(
    ("path", "body", "args"),
    [
        ("/session/s1", {"status": ["RUNNING"]}, ("setup-vscode", "s1", "--dry-run")),
        ("/session/demo", [], ("hosts", "prune", "--yes")),
        ("/stream/session/s1/apps", {"sshd": 1}, ("doctor", "s1.bai")),
        ("/stream/session/s1/apps", [{"nam": "sshd"}], ("doctor", "s1.bai")),
        ("/auth/ssh-keypair", {"ssh_public_key": 7}, ("authorized-keys", "list")),
    ],
    ids=["status-not-a-string", "info-not-an-object", "apps-not-a-list", "app-no-name", "key"],
)
def test_a_malformed_answer_is_one_error_line(
    sshkit: Callable[..., Outcome],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    path: str,
    body: Any,
    args: tuple[str, ...],
) -> None:
    monkeypatch.setenv("SSHKIT_ENDPOINT", "http://bai.example")
    monkeypatch.setenv("SSHKIT_ACCESS_KEY", "AK")
    monkeypatch.setenv("SSHKIT_SECRET_KEY", "SK")
    config = tmp_path / "ssh_config"
    config.write_bytes(SshConfig([]).upsert(BLOCK).upsert(WILD).render())
    extra = ("--ssh-config", str(config)) if args[0] in ("setup-vscode", "hosts", "doctor") else ()
    if args[0] == "authorized-keys":
        # The keypair's key is read to protect it when removing a key.
        args = ("push-authorized-keys", "--key", public_line(), "--remove", "SHA256:" + "A" * 43)
    result = sshkit(*args, *extra, handler=malformed(path, body))
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "KeyError" not in text and "TypeError" not in text
    assert "the server's answer is malformed" in text, text
    if args[0] != "doctor":  # doctor reports it as a failed check
        assert result.code == ExitCode.SERVER, text
        assert result.stderr.startswith("sshkit: error: ") and len(result.stderr.splitlines()) == 1
    assert result.ledger.left_open == 0


def test_session_info_keeps_the_version_differences() -> None:
    from sshkit.api.models import MalformedAnswer, SessionInfo

    # 23.09 says "None" before the container exists: no id to pin by.
    assert SessionInfo.from_json({"status": "PREPARING", "containerId": "None"}).id is None
    assert SessionInfo.from_json({"status": "RUNNING", "containerId": "c0ffee"}).id == "c0ffee"
    assert SessionInfo.from_json({}).status is None
    with pytest.raises(MalformedAnswer):
        SessionInfo.from_json(json.loads('{"status": 1}'))


@pytest.mark.parametrize(
    ("call", "body"),
    [
        (lambda c: c.get_session("s1"), None),
        (lambda c: c.get_session("s1"), {"status": 3}),
        (lambda c: c.session_apps("s1"), [{"name": None}]),
        (lambda c: c.session_apps("s1"), ["sshd"]),
        (lambda c: c.match_sessions("s"), {"matches": {"id": "x"}}),
        (lambda c: c.match_sessions("s"), {"matches": [{"name": 1}]}),
        (lambda c: c.get_ssh_keypair(), ["ssh-ed25519 AAAA"]),
        (lambda c: c.list_folders(), {"items": []}),
        (lambda c: c.folder_info("f"), {"name": ["f"]}),
        (lambda c: c.list_files("f"), {"files": "[]"}),
        (lambda c: c.list_files("f"), {"items": [{"size": 1}]}),
    ],
)
def test_each_malformed_answer_is_a_server_error(call: Callable[[Any], object], body: Any) -> None:
    from sshkit.api.client import BackendClient
    from sshkit.errors import ServerError
    from tests.api_fakes import fake_session
    from tests.test_api_client import api_conn

    def handler(req: requests.PreparedRequest) -> Reply:
        if req.path_url == "/":
            return Reply(200, HELLO)
        return Reply(200, b"" if body is None else json.dumps(body).encode())

    http, _ = fake_session(handler)
    with BackendClient(api_conn(), http=http) as client, pytest.raises(ServerError) as info:
        call(client)
    assert "the server's answer is malformed" in info.value.message
    assert "\n" not in info.value.message


def test_typed_answers_read_what_servers_send() -> None:
    from sshkit.api.models import AppInfo, FileEntry, FolderInfo, Keypair, MatchEntry

    apps = [{"name": "sshd", "protocol": "tcp", "ports": [2200]}, {"name": "ttyd"}]
    assert AppInfo.list_from_json(apps) == [AppInfo("sshd", "tcp"), AppInfo("ttyd")]
    matches = {"matches": [{"id": "abc", "name": "s1", "status": "RUNNING"}]}
    assert MatchEntry.list_from_json(matches) == [MatchEntry("abc", "s1", "RUNNING")]
    assert Keypair.from_json({"ssh_public_key": "  "}).ssh_public_key is None
    assert FolderInfo.from_json({"name": ".ssh", "permission": "ro"}).permission == "ro"
    # 23.09 sends "644", 25.6+ the raw st_mode; either is the permission bits.
    items = {"items": [{"name": "a", "mode": "644", "size": 3}, {"name": "b", "mode": 33188}]}
    assert FileEntry.list_from_json(items) == [
        FileEntry("a", 3, 0o644),
        FileEntry("b", None, 0o644),
    ]
