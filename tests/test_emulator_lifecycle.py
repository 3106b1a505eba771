"""Emulator process lifecycle: ready file, SIGTERM/SIGKILL leave no processes, dropbear sessions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.emulator_fixture import HERMETIC_SSH, Emulator, EmulatorFactory, start_emulator


def _ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    ppids = _ppids()
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, pp in ppids.items():
            if pp == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if _alive(p)}
        if not left:
            return set()
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def _fetch_key(emu: Emulator, session: str, dest: Path) -> Path:
    resp = emu.download_key(session, dest)
    assert resp.status_code == 200, resp.text
    return dest


def test_ready_file_fields(emulator: Emulator) -> None:
    info = emulator.info
    for key in (
        "manager_url",
        "webserver_url",
        "storage_url",
        "access_key",
        "secret_key",
        "username",
        "password",
        "sessions",
        "ssh_user",
        "sshd",
    ):
        assert info[key], key
    assert info["sessions"][0] == "demo-session"
    assert set(info["sshd"]) == set(info["sessions"])
    assert info["sshd"]["demo-session"].startswith("127.0.0.1:")
    assert len({info["manager_url"], info["webserver_url"], info["storage_url"]}) == 3


def test_sigterm_leaves_no_process(tmp_path: Path) -> None:
    emu = start_emulator(tmp_path / "emu")
    ssh: subprocess.Popen[bytes] | None = None
    try:
        emu.hook("POST", "sessions", {"name": "second"})
        key = _fetch_key(emu, "second", tmp_path / "key")
        host, port = emu.sshd_addr()
        # An open login, so sshd has per-connection children (they call setsid()).
        key0 = _fetch_key(emu, emu.session, tmp_path / "key0")
        ssh = subprocess.Popen(
            [
                "ssh",
                *HERMETIC_SSH,
                "-i",
                str(key0),
                "-p",
                str(port),
                f"{emu.ssh_user}@{host}",
                "echo started; sleep 120",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert ssh.stdout is not None
        assert ssh.stdout.readline() == b"started\n"
        assert key.is_file()
        children = _descendants(emu.process.pid)
        assert len(children) >= 3  # two sshd listeners + the login's processes
        emu.process.send_signal(signal.SIGTERM)
        assert emu.process.wait(timeout=30) == 0
        assert _wait_gone(children) == set()
        assert ssh.wait(timeout=30) != 0  # the login was cut
    finally:
        if ssh is not None:
            if ssh.poll() is None:
                ssh.kill()
                ssh.wait()
            if ssh.stdout is not None:
                ssh.stdout.close()
        emu.stop()


def test_sigkill_takes_sshd_down(tmp_path: Path) -> None:
    emu = start_emulator(tmp_path / "emu")
    try:
        children = _descendants(emu.process.pid)
        assert children
        emu.process.kill()
        emu.process.wait(timeout=10)
        # PR_SET_PDEATHSIG: sshd gets SIGTERM when the emulator dies.
        assert _wait_gone(children) == set()
    finally:
        emu.stop()


@pytest.mark.needs_root
def test_dropbear_session(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    if os.getuid() != 0 or not shutil.which("dropbear"):
        pytest.skip("dropbear sessions need root and dropbear-bin")
    emu = emulator_factory(sshd="dropbear")
    key = _fetch_key(emu, emu.session, tmp_path / "id_container")
    host, port = emu.sshd_addr()
    out = subprocess.run(
        [
            "ssh",
            *HERMETIC_SSH,
            "-i",
            str(key),
            "-p",
            str(port),
            f"{emu.ssh_user}@{host}",
            "echo ok; test -f ~/id_container && echo home",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\nhome\n"
    # A wrong key is refused.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    refused = subprocess.run(
        ["ssh", *HERMETIC_SSH, "-i", str(other), "-p", str(port), f"{emu.ssh_user}@{host}", "true"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 255
