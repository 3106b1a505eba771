"""`sshkit export putty|winscp|filezilla` as a user runs it, and the exports used for real.

The end-to-end tests load each export into PuTTY's own command-line tools (plink, psftp
from putty-tools, the same code base as PuTTY, WinSCP and FileZilla's fzsftp) and log in
to an emulated session with them: PuTTY/WinSCP through the exported local proxy command
(`sshkit relay`), FileZilla's site through `sshkit forward`.
"""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sshkit.formats import exports as fmt
from tests.emulator_fixture import Emulator
from tests.test_exports import EXISTING, parse_reg, windows_argv

SSHKIT = Path(sys.executable).parent / "sshkit"
REG_KEY = fmt.PUTTY_SESSIONS_KEY + "\\"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(SSHKIT), *args], capture_output=True, timeout=120, env=env, cwd=cwd)


def make_key(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "export test", "-f", str(key)],
        check=True,
    )
    return key


def ssh_fingerprint(path: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def puttygen_fingerprint(ppk: Path) -> str:
    out = subprocess.run(
        ["puttygen", str(ppk), "-l", "-E", "sha256"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[2]


needs_puttygen = pytest.mark.skipif(shutil.which("puttygen") is None, reason="needs puttygen")


@needs_puttygen
def test_putty_export_converts_the_key_and_writes_the_reg(tmp_path: Path) -> None:
    keydir = tmp_path / "my keys ünï"
    key = make_key(keydir)
    out = tmp_path / "out dir" / "gpu.reg"
    out.parent.mkdir()
    proc = run("export", "putty", "demo-session", "--key", str(key), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout.decode()

    ppk = keydir / "id_ed25519.ppk"
    assert ppk.read_bytes().startswith(b"PuTTY-User-Key-File-3: ssh-ed25519")
    assert puttygen_fingerprint(ppk) == ssh_fingerprint(key)

    values = parse_reg(out.read_bytes())[REG_KEY + "bai-demo-session"]
    assert values["HostName"] == "demo-session"
    assert values["UserName"] == "work"
    assert values["PublicKeyFile"] == str(ppk)
    assert values["ProxyMethod"] == 5
    command = fmt.putty_command_unescape(str(values["ProxyTelnetCommand"]), host="h", port=22)
    assert windows_argv(command) == [str(SSHKIT.absolute()), "relay", "--", "h"]


@needs_puttygen
def test_putty_export_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    out = tmp_path / "s.reg"
    out.write_bytes(b"keep me")
    proc = run("export", "putty", "s1", "--key", str(key), "-o", str(out))
    assert proc.returncode == 11
    assert proc.stderr.decode().startswith("sshkit: error: ")
    assert "--force" in proc.stderr.decode()
    assert out.read_bytes() == b"keep me"
    proc = run("export", "putty", "s1", "--key", str(key), "-o", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert REG_KEY + "bai-s1" in parse_reg(out.read_bytes())


@needs_puttygen
def test_export_to_stdout_and_default_file_name(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    proc = run("export", "winscp", "s1", "--key", str(key), "--alias", "GPU box", "-o", "-")
    assert proc.returncode == 0, proc.stderr
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(proc.stdout.decode())
    assert ini["Sessions\\GPU%20box"]["HostName"] == "s1"

    work = tmp_path / "cwd"
    work.mkdir()
    proc = run("export", "putty", "s1", "--key", str(key), "--user", "root", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert parse_reg((work / "bai-s1.reg").read_bytes())[REG_KEY + "bai-s1"]["UserName"] == "root"


def test_a_missing_key_is_one_clear_error(tmp_path: Path) -> None:
    proc = run("export", "putty", "s1", "--key", str(tmp_path / "nope"), "-o", str(tmp_path / "x"))
    assert proc.returncode == 11
    assert proc.stderr.decode().splitlines()[0].startswith("sshkit: error: the key ")
    assert not (tmp_path / "x").exists()


@needs_puttygen
def test_filezilla_export_merges_and_backs_up(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    ppk = tmp_path / "k" / "id_ed25519.ppk"
    subprocess.run(["puttygen", str(key), "-O", "private", "-o", str(ppk)], check=True)
    target = tmp_path / "fz" / "sitemanager.xml"
    target.parent.mkdir()
    target.write_text(EXISTING)
    proc = run("export", "filezilla", "s1", "--key", str(ppk), "-o", str(target), "--port", "2299")
    assert proc.returncode == 0, proc.stderr
    assert "3 other site(s) kept" in proc.stdout.decode()
    assert (tmp_path / "fz" / "sitemanager.xml.sshkit-backup").read_text() == EXISTING
    root = ET.fromstring(target.read_bytes())
    names = [s.findtext("Name") for s in root.iter("Server")]
    assert names == ["Example FTP", "bai-demo-session", None, "bai-s1"]
    ours = root.findall("Servers/Server")[-1]
    assert ours.findtext("Port") == "2299"
    assert ours.findtext("Keyfile") == str(ppk)  # a .ppk is used as it is
    # Exporting again replaces the site; the backup keeps the original.
    proc = run("export", "filezilla", "s1", "--key", str(ppk), "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "replaced" in proc.stdout.decode()
    assert len(ET.fromstring(target.read_bytes()).findall("Servers/Server")) == 3
    assert (tmp_path / "fz" / "sitemanager.xml.sshkit-backup").read_text() == EXISTING


@needs_puttygen
def test_filezilla_default_target_is_filezillas_own_file(
    tmp_path: Path, hermetic_home: Path
) -> None:
    key = make_key(tmp_path / "k")
    proc = run("export", "filezilla", "s1", "--key", str(key))
    assert proc.returncode == 0, proc.stderr
    target = hermetic_home / ".config" / "filezilla" / "sitemanager.xml"
    assert [s.findtext("Name") for s in ET.fromstring(target.read_bytes()).iter("Server")] == [
        "bai-s1"
    ]


# --- end to end: the exports used by PuTTY's own tools --------------------------------


def putty_session_file(puttydir: Path, name: str, values: dict[str, str | int]) -> None:
    """Save `values` the way Unix PuTTY stores a session (~/.putty/sessions/NAME)."""
    sessions = puttydir / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    (sessions / fmt.putty_session_key(name)).write_text(body)


def host_key_fingerprints(host: str, port: int) -> list[str]:
    scan = subprocess.run(
        ["ssh-keyscan", "-p", str(port), host], capture_output=True, text=True, timeout=30
    )
    fps = []
    for line in scan.stdout.splitlines():
        if line and not line.startswith("#"):
            keytext = line.split(None, 1)[1]
            out = subprocess.run(
                ["ssh-keygen", "-lf", "-"], input=keytext, capture_output=True, text=True
            )
            fps.append(out.stdout.split()[1])
    assert fps, scan.stderr
    return fps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_env(emulator: Emulator, hermetic_home: Path, tmp_path: Path) -> dict[str, str]:
    return emulator.sshkit_api_env(PUTTYDIR=str(tmp_path / "putty"))


needs_putty_tools = pytest.mark.skipif(
    shutil.which("plink") is None or shutil.which("psftp") is None, reason="needs putty-tools"
)


@needs_putty_tools
def test_plink_logs_in_with_the_putty_export(
    emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    session = emulator.session
    out = tmp_path / "s.reg"
    proc = run("export", "putty", session, "--user", emulator.ssh_user, "-o", str(out), env=api_env)
    assert proc.returncode == 0, proc.stderr
    values = parse_reg(out.read_bytes())[REG_KEY + f"bai-{session}"]
    putty_session_file(Path(api_env["PUTTYDIR"]), f"bai-{session}", values)

    hostkeys = [a for fp in host_key_fingerprints(*emulator.sshd_addr()) for a in ("-hostkey", fp)]
    plink = subprocess.run(
        ["plink", "-load", f"bai-{session}", "-batch", *hostkeys, "echo plink-ok"],
        capture_output=True,
        env=api_env,
        timeout=120,
    )
    assert plink.returncode == 0, plink.stderr
    assert plink.stdout.decode().strip() == "plink-ok"


@needs_putty_tools
def test_psftp_logs_in_with_the_winscp_export(
    emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    session = emulator.session
    proc = run("export", "winscp", session, "--user", emulator.ssh_user, "-o", "-", env=api_env)
    assert proc.returncode == 0, proc.stderr
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(proc.stdout.decode())
    sec = ini[f"Sessions\\bai-{session}"]
    # The fields WinSCP shares with PuTTY, unmunged as WinSCP reads them.
    values: dict[str, str | int] = {
        "HostName": fmt.winscp_unmunge(sec["HostName"]),
        "PortNumber": int(sec["PortNumber"]),
        "Protocol": "ssh",
        "UserName": fmt.winscp_unmunge(sec["UserName"]),
        "PublicKeyFile": fmt.winscp_unmunge(sec["PublicKeyFile"]),
        "ProxyMethod": int(sec["ProxyMethod"]),
        "ProxyTelnetCommand": sec["ProxyTelnetCommand"],
    }
    putty_session_file(Path(api_env["PUTTYDIR"]), "winscp-site", values)
    script = tmp_path / "cmds"
    script.write_text("pwd\nquit\n")
    hostkeys = [a for fp in host_key_fingerprints(*emulator.sshd_addr()) for a in ("-hostkey", fp)]
    psftp = subprocess.run(
        ["psftp", "-load", "winscp-site", "-batch", *hostkeys, "-b", str(script)],
        capture_output=True,
        env=api_env,
        timeout=120,
    )
    assert psftp.returncode == 0, psftp.stderr
    assert b"Remote working directory is /" in psftp.stdout


@needs_putty_tools
def test_psftp_logs_in_with_the_filezilla_site_through_forward(
    emulator, api_env: dict[str, str], tmp_path: Path
) -> None:
    session = emulator.session
    port = free_port()
    target = tmp_path / "sitemanager.xml"
    target.write_text(EXISTING)
    proc = run(
        "export",
        "filezilla",
        session,
        "--user",
        emulator.ssh_user,
        "--port",
        str(port),
        "-o",
        str(target),
        env=api_env,
    )
    assert proc.returncode == 0, proc.stderr
    site = [
        s
        for s in fmt.filezilla_sites(target.read_bytes())
        if s.get("Name") == f"bai-{session}" and s.get("Host") == "127.0.0.1"
    ]
    assert len(site) == 1
    fields = site[0]
    assert (fields["Protocol"], fields["Logontype"]) == ("1", "5")

    forward = subprocess.Popen(
        [str(SSHKIT), "forward", session, "-b", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=api_env,
    )
    try:
        _wait_for_port(int(fields["Port"]), forward)
        script = tmp_path / "cmds"
        script.write_text("pwd\nquit\n")
        hostkeys = [
            a for fp in host_key_fingerprints(*emulator.sshd_addr()) for a in ("-hostkey", fp)
        ]
        psftp = subprocess.run(
            [
                "psftp",
                "-P",
                fields["Port"],
                "-i",
                fields["Keyfile"],
                "-batch",
                *hostkeys,
                "-b",
                str(script),
                f"{fields['User']}@{fields['Host']}",
            ],
            capture_output=True,
            env=api_env,
            timeout=120,
        )
        assert psftp.returncode == 0, psftp.stderr
        assert b"Remote working directory is /" in psftp.stdout
    finally:
        forward.terminate()
        forward.communicate(timeout=20)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read() if proc.stderr else b"forward exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("sshkit forward did not listen")
