"""push-authorized-keys / authorized-keys list against the emulator, with real ssh logins."""

from __future__ import annotations

import base64
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sshkit.api.client import BackendClient
from sshkit.errors import ExitCode
from sshkit.formats.authorized_keys import AuthorizedKeys, fingerprint_sha256
from sshkit.settings import load_connection
from tests.emulator_fixture import HERMETIC_SSH, Emulator, EmulatorFactory

SSHKIT = Path(sys.executable).with_name("sshkit")
VERSIONS = ("23.09", "26.3")
KEYPAIR = ["push-authorized-keys", "--to", "keypair"]
PASSPHRASE_PROMPT = "Passphrase for the private key: "  # the space: getpass has started
CONFIRM = "Upload this private key? [y/N]:"


def env_for(emu: Emulator) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SSHKIT_ENDPOINT=emu.manager_url,
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY=emu.access_key,
        SSHKIT_SECRET_KEY=emu.secret_key,
    )
    return env


def sshkit(emu: Emulator, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_for(emu),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def client_for(emu: Emulator) -> BackendClient:
    return BackendClient.from_connection(load_connection(environ=env_for(emu)))


def keygen(path: Path, kind: str = "ed25519", comment: str = "me@laptop") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return path


def ssh_login(emu: Emulator, session: str, key: Path) -> subprocess.CompletedProcess[str]:
    host, port = session_addr(emu, session)
    return subprocess.run(
        [
            "ssh", *HERMETIC_SSH, "-i", str(key), "-p", str(port),
            f"{emu.ssh_user}@{host}", "echo", "logged-in-as-$(id -un)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def session_addr(emu: Emulator, session: str) -> tuple[str, int]:
    for item in emu.hook("GET", "sessions"):
        if item["name"] == session:
            host, port = str(item["sshd"]).rsplit(":", 1)
            return host, int(port)
    raise AssertionError(f"no session {session}")


def new_session(emu: Emulator) -> str:
    name = f"ak-{uuid.uuid4().hex[:8]}"
    emu.hook("POST", "sessions", {"name": name})
    return name


def requests_since_clear(emu: Emulator) -> list[dict[str, Any]]:
    return list(emu.hook("GET", "requests"))


def seed(emu: Emulator, folder: str, path: str, data: bytes) -> None:
    emu.hook(
        "POST",
        f"vfolders/{folder}/files",
        {"path": path, "content_b64": base64.b64encode(data).decode()},
    )


def public_line(key: Path) -> str:
    return key.with_name(key.name + ".pub").read_text().strip()


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


@pytest.fixture(
    scope="module", params=[("23.09", "openssh"), ("26.3", "dropbear")], ids=lambda p: "-".join(p)
)
def dot_ssh_emulator(
    request: pytest.FixtureRequest, emulator_factory: EmulatorFactory
) -> Iterator[Emulator]:
    """A fresh emulator that allows a `.ssh` folder (ours alone: the folder changes sessions).

    Dropbear is the sshd real sessions run; its checks on authorized_keys (owner,
    not group/world-writable) then judge the file the storage proxy wrote.
    """
    version, sshd = request.param
    emu = emulator_factory(server_version=version, sshd=sshd, allow_dot_ssh_folder=True, fresh=True)
    yield emu
    emu.stop()


# --- the .ssh folder, where the server allows it ------------------------------------------------


def test_push_to_dot_ssh_folder_merges_and_new_sessions_accept_the_key(
    dot_ssh_emulator: Emulator, hermetic_home: Path
) -> None:
    emu = dot_ssh_emulator
    key = keygen(hermetic_home / ".ssh" / "id_ed25519")
    other = keygen(hermetic_home / "other" / "id_ed25519", comment="someone else")

    # A dry run shows the diff and neither creates the folder nor uploads.
    emu.hook("DELETE", "requests")
    dry = sshkit(emu, "push-authorized-keys", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+" + public_line(key) in dry.stdout
    assert not [r for r in requests_since_clear(emu) if r["method"] != "GET"]
    assert all(f.name != ".ssh" for f in client_for(emu).list_folders())

    # Lines already there, with options, comments, CRLF and no final newline.
    existing = (
        b"# team keys\r\n"
        + f'restrict,command="echo hi, there",from="10.0.0.1" {public_line(other)}\r\n'.encode()
        + b"\n"
        + b"# last line without newline"
    )
    seed(emu, ".ssh", "authorized_keys", existing)
    push = sshkit(emu, "push-authorized-keys")
    assert push.returncode == 0, push.stderr
    assert "added ssh-ed25519" in push.stdout
    stored = client_for(emu).download_file(".ssh", "authorized_keys")
    assert stored == existing + b"\n" + public_line(key).encode() + b"\n"

    # A second push finds the key and uploads nothing.
    emu.hook("DELETE", "requests")
    again = sshkit(emu, "push-authorized-keys", str(key) + ".pub")
    assert again.returncode == 0, again.stderr
    assert "nothing uploaded" in again.stdout
    assert not [r for r in requests_since_clear(emu) if "request-upload" in r["path"]]
    assert client_for(emu).download_file(".ssh", "authorized_keys") == stored

    # A session started now mounts the folder at ~/.ssh and accepts the key.
    session = new_session(emu)
    login = ssh_login(emu, session, key)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == f"logged-in-as-{emu.ssh_user}"

    # The session upload cannot write through that mount (the agent writes to the
    # scratch directory beneath it): sshkit notices instead of claiming success.
    third = keygen(hermetic_home / "third" / "id_ed25519", comment="third")
    through_mount = sshkit(
        emu, "push-authorized-keys", "--to", "session", "--session", session, f"{third}.pub"
    )
    assert through_mount.returncode == ExitCode.SERVER
    assert "did not change" in through_mount.stderr
    assert client_for(emu).download_file(".ssh", "authorized_keys") == stored

    listed = sshkit(emu, "authorized-keys", "list")
    assert listed.returncode == 0, listed.stderr
    fp = fingerprint_sha256(blob_of(public_line(key)))
    assert fp in listed.stdout and "someone else" in listed.stdout

    # --remove takes exactly that key out and leaves every other byte alone.
    removed = sshkit(emu, "push-authorized-keys", "--remove", fp)
    assert removed.returncode == 0, removed.stderr
    assert client_for(emu).download_file(".ssh", "authorized_keys") == existing + b"\n"


def test_concurrent_pushes_of_different_keys_both_land(
    dot_ssh_emulator: Emulator, hermetic_home: Path
) -> None:
    emu = dot_ssh_emulator
    seed(emu, ".ssh", "authorized_keys", b"# shared\n")
    keys = [keygen(hermetic_home / f"k{i}" / "id_ed25519", comment=f"racer{i}") for i in range(2)]
    procs = [
        subprocess.Popen(
            [str(SSHKIT), "push-authorized-keys", f"{k}.pub"],
            env=env_for(emu),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in keys
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    doc = AuthorizedKeys.parse(client_for(emu).download_file(".ssh", "authorized_keys"))
    assert doc.render().startswith(b"# shared\n")
    assert {k.blob for k in doc.keys()} == {blob_of(public_line(k)) for k in keys}  # noqa: SIM118


# --- servers that refuse `.ssh` (the default) ----------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_reserved_folder_name_is_explained_and_nothing_is_created(
    version: str, emulator_factory: EmulatorFactory, hermetic_home: Path
) -> None:
    keygen(hermetic_home / ".ssh" / "id_ed25519")
    emu = emulator_factory(server_version=version)
    emu.hook("DELETE", "requests")
    proc = sshkit(emu, "push-authorized-keys")
    assert proc.returncode == ExitCode.REJECTED
    assert "Traceback" not in proc.stderr
    assert "reserve" in proc.stderr and "nothing was changed" in proc.stderr
    assert "--to keypair" in proc.stderr and "--to session" in proc.stderr
    assert all(f.name != ".ssh" for f in client_for(emu).list_folders())
    assert not [r for r in requests_since_clear(emu) if "request-upload" in r["path"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_push_to_running_session_lets_the_key_log_in(
    version: str, emulator_factory: EmulatorFactory, hermetic_home: Path
) -> None:
    emu = emulator_factory(server_version=version)
    session = new_session(emu)
    key = keygen(hermetic_home / ".ssh" / "id_ed25519")
    before = ssh_login(emu, session, key)
    assert before.returncode != 0  # the session only knows the keypair's key so far

    proc = sshkit(emu, "push-authorized-keys", "--to", "session", "--session", session)
    assert proc.returncode == 0, proc.stderr
    login = ssh_login(emu, session, key)
    assert login.returncode == 0, login.stderr

    # The keypair key is still there, first, byte for byte.
    listed = sshkit(emu, "authorized-keys", "list", "--session", session, "--json")
    assert listed.returncode == 0, listed.stderr
    import json

    rows = json.loads(listed.stdout)["keys"]
    assert [r["type"] for r in rows] == ["ssh-rsa", "ssh-ed25519"]
    again = sshkit(emu, "push-authorized-keys", "--to", "session", "--session", session)
    assert again.returncode == 0 and "nothing uploaded" in again.stdout


def test_push_to_unknown_session_is_not_found(emulator: Emulator, hermetic_home: Path) -> None:
    keygen(hermetic_home / ".ssh" / "id_ed25519")
    proc = sshkit(emulator, "push-authorized-keys", "--to", "session", "--session", "no-such")
    assert proc.returncode == ExitCode.NOT_FOUND, proc.stderr
    assert "Traceback" not in proc.stderr


def run_in_pty(
    emu: Emulator, args: list[str], dialog: list[tuple[str, str]]
) -> subprocess.CompletedProcess[str]:
    """Run sshkit with a pseudo-terminal as stdin; answer each prompt once it appears.

    `dialog` is [(prompt text awaited on stderr, answer typed)]. Typing must wait
    for the prompt: getpass flushes pending input (TCSAFLUSH) when it starts.
    """
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [str(SSHKIT), *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(emu),
        start_new_session=True,  # no controlling terminal: prompts use the pty on stdin
    )
    os.close(slave)
    assert proc.stderr is not None and proc.stdout is not None
    err = b""
    deadline = time.monotonic() + 60
    try:
        for prompt, answer in dialog:
            while prompt.encode() not in err:
                assert time.monotonic() < deadline, err
                ready, _, _ = select.select([proc.stderr], [], [], 1.0)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, f"sshkit exited before asking {prompt!r}: {err!r}"
                    err += chunk
            err = err.replace(prompt.encode(), b"<asked>", 1)
            os.write(master, answer.encode() + b"\n")
        out, rest = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out.decode(), (err + rest).decode()
    )


def test_keypair_upload_needs_confirmation_then_new_sessions_accept_the_key(
    emulator_factory: EmulatorFactory, hermetic_home: Path
) -> None:
    emu = emulator_factory(server_version="23.09", fresh=True)
    try:
        key = hermetic_home / ".ssh" / "id_ed25519"
        key.parent.mkdir(mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-C", "me", "-f", str(key)],
            check=True,
        )
        old = client_for(emu).get_ssh_keypair().ssh_public_key

        # Not a terminal and no --yes: refused, unchanged.
        refused = sshkit(emu, "push-authorized-keys", "--to", "keypair")
        assert refused.returncode == ExitCode.PASSPHRASE  # cannot even ask for the passphrase
        answered_no = run_in_pty(emu, KEYPAIR, [(PASSPHRASE_PROMPT, "pass phrase"), (CONFIRM, "n")])
        assert answered_no.returncode == ExitCode.DECLINED, answered_no.stderr
        assert "PRIVATE key" in answered_no.stderr and "unencrypted" in answered_no.stderr
        assert client_for(emu).get_ssh_keypair().ssh_public_key == old

        done = run_in_pty(emu, KEYPAIR, [(PASSPHRASE_PROMPT, "pass phrase"), (CONFIRM, "y")])
        assert done.returncode == 0, done.stderr
        stored = client_for(emu).get_ssh_keypair().ssh_public_key
        assert blob_of(stored) == blob_of(public_line(key))

        # New sessions accept the key, and get the pair as unencrypted PEM (what
        # servers validate with load_pem_private_key) in ~/id_container.
        session = new_session(emu)
        clear = hermetic_home / "clear" / "id_ed25519"  # ssh in BatchMode cannot ask either
        clear.parent.mkdir()
        shutil.copy(key, clear)
        subprocess.run(
            ["ssh-keygen", "-q", "-p", "-P", "pass phrase", "-N", "", "-f", str(clear)], check=True
        )
        login = ssh_login(emu, session, clear)
        assert login.returncode == 0, login.stderr
        pem = client_for(emu).download_session_file(session, "id_container")
        private = serialization.load_pem_private_key(pem, password=None)
        assert private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode() == " ".join(public_line(key).split()[:2])

        # Pushing the same pair again needs no confirmation and uploads nothing.
        again = sshkit(emu, "push-authorized-keys", "--to", "keypair")
        assert again.returncode == ExitCode.PASSPHRASE  # the key file is still encrypted
        again = run_in_pty(emu, KEYPAIR, [(PASSPHRASE_PROMPT, "pass phrase")])
        assert again.returncode == 0 and "nothing uploaded" in again.stdout, again.stderr
    finally:
        emu.stop()


def test_keypair_refuses_without_terminal_or_yes(emulator: Emulator, hermetic_home: Path) -> None:
    keygen(hermetic_home / ".ssh" / "id_ed25519")
    old = client_for(emulator).get_ssh_keypair().ssh_public_key
    refused = sshkit(emulator, "push-authorized-keys", "--to", "keypair")
    assert refused.returncode == ExitCode.USAGE
    assert "--yes" in refused.stderr and "PRIVATE key" in refused.stderr
    assert client_for(emulator).get_ssh_keypair().ssh_public_key == old


# --- bad input is refused before anything is sent ------------------------------------------------


def _rsa_1024_pub(directory: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path = directory / "weak.pub"
    path.write_bytes(pub + b" weak\n")
    return path


def test_private_malformed_and_weak_keys_are_refused_and_nothing_is_sent(
    emulator: Emulator, hermetic_home: Path
) -> None:
    emu = emulator
    private = keygen(hermetic_home / "keys" / "id_ed25519")
    weak = _rsa_1024_pub(hermetic_home / "keys")
    cases = [
        ([str(private)], "is a private key"),
        (["--key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA!!"], "not a valid public key"),
        ([str(weak)], "1024-bit RSA key"),
    ]
    for args, reason in cases:
        emu.hook("DELETE", "requests")
        proc = sshkit(
            emu, "push-authorized-keys", "--to", "session", "--session", emu.session, *args
        )
        assert proc.returncode == ExitCode.KEY_FORMAT, (args, proc.stderr)
        assert reason in proc.stderr
        assert "PRIVATE KEY" not in proc.stderr and "Traceback" not in proc.stderr
        assert requests_since_clear(emu) == []


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_no_default_key_is_a_clear_error(emulator: Emulator, hermetic_home: Path) -> None:
    proc = sshkit(emulator, "push-authorized-keys", "--dry-run")
    assert proc.returncode == ExitCode.LOCAL_FILE
    assert "id_ed25519.pub" in proc.stderr and "ssh-keygen" in proc.stderr
