"""`setup-vscode --multiplex`: blocks that share one connection through an OpenSSH master.

Unit tests of the written options, then real OpenSSH against the emulator.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshkit.errors import SshConfigError, UsageError
from sshkit.formats.ssh_config import multiplex_options
from sshkit.services import vscode as svc
from tests import leftover_processes
from tests.emulator_fixture import Emulator

SSHKIT = Path(sys.executable).parent / "sshkit"
LAUNCHER = ["/usr/bin/sshkit"]


@pytest.fixture(autouse=True)
def short_home_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Socket paths must be short; the unit tests write nothing, so any short HOME does.
    if "short_home" not in request.fixturenames:
        monkeypatch.setenv("HOME", "/home/u")


def blocks(**options: object) -> list[dict[str, str]]:
    opts = svc.SetupOptions(session="demo", **options)  # type: ignore[arg-type]
    built = svc.build_blocks(opts, Path("/k/id"), launcher=LAUNCHER, platform="posix")
    return [
        {k: v for k, v in b.options} | {"#multiplex": b.meta.get("multiplex", "")} for b in built
    ]


def test_multiplexed_blocks_get_master_path_and_persist() -> None:
    mux_dir = svc.control_dir()
    for block in blocks(multiplex="10m"):
        assert block["ControlMaster"] == "auto"
        assert block["ControlPath"] == f"{mux_dir}/%C"
        assert block["ControlPersist"] == "10m"
        assert block["#multiplex"] == "10m"
    assert mux_dir == Path("/home/u/.ssh/sshkit/mux")


def test_blocks_are_not_multiplexed_unless_asked() -> None:
    for block in blocks():
        assert not {"ControlMaster", "ControlPath", "ControlPersist"} & set(block)


def test_multiplex_is_refused_on_windows() -> None:
    opts = svc.SetupOptions(session="demo", multiplex="10m")
    with pytest.raises(UsageError, match="Windows has no ControlMaster"):
        svc.build_blocks(opts, Path("/k/id"), launcher=LAUNCHER, platform="windows")


@pytest.mark.parametrize("persist", ["", "10 m", "forever", "-1", "10m;x"])
def test_bad_persist_times_are_refused(persist: str) -> None:
    with pytest.raises(UsageError, match="ControlPersist"):
        blocks(multiplex=persist)


@pytest.mark.parametrize("persist", ["10m", "1h30m", "600", "yes"])
def test_persist_times_ssh_reads(persist: str) -> None:
    assert multiplex_options("/d", persist)[2] == ("ControlPersist", persist)


def test_a_directory_too_long_for_a_socket_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # 108 - 59 = 49 bytes on Linux: "/" + 48 fits, one more does not.
    assert multiplex_options("/" + "d" * 48, "10m", sun_path=108)
    with pytest.raises(SshConfigError, match="too long"):
        multiplex_options("/" + "d" * 49, "10m", sun_path=108)
    monkeypatch.setenv("HOME", "/" + "h" * 40)
    with pytest.raises(UsageError, match="too long for ssh's control sockets"):
        blocks(multiplex="10m")


def test_percent_in_the_directory_is_escaped() -> None:
    assert multiplex_options("/a%b", "1m")[1] == ("ControlPath", "/a%%b/%C")


# With the emulator. ssh's control sockets need a short path (sun_path holds 108
# bytes), so HOME is a short directory of its own rather than pytest's tmp_path.


def sshkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SSHKIT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def short_home(api_env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    home = Path(tempfile.mkdtemp(prefix="skh-", dir="/tmp"))
    env = {**api_env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    try:
        yield home, env
    finally:
        ssh_left = leftover_processes.processes(home, "ssh")
        leftover_processes.kill_all(ssh_left)
        relays = leftover_processes.wait_none(home, "relay", timeout=5)
        leftover_processes.kill_all(relays)
        shutil.rmtree(home, ignore_errors=True)
        assert not relays and not ssh_left, (relays, ssh_left)


def timed_ssh(config: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        # stderr to a file: the master keeps the first ssh's stderr if it was a pipe.
        proc = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            timeout=120,
        )
        err.seek(0)
        message = err.read().decode(errors="replace")
    assert proc.returncode == 0, message
    return time.monotonic() - started, message


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")
def test_second_connection_reuses_the_master(
    emulator: Emulator, short_home: tuple[Path, dict[str, str]]
) -> None:
    home, env = short_home
    proc = sshkit(
        "setup-vscode", emulator.session, "--yes", "--user", emulator.ssh_user, "--multiplex",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Multiplexed:" in proc.stdout and "ssh -O exit bai-vscode" in proc.stdout
    mux_dir = home / ".ssh" / "sshkit" / "mux"
    assert stat.S_IMODE(mux_dir.stat().st_mode) == 0o700
    listed = json.loads(sshkit("hosts", "list", "--json", env=env).stdout)
    assert {(h["alias"], h["multiplex"]) for h in listed} == {
        ("bai-vscode", "10m"),
        ("*.bai", "10m"),
    }
    assert " 10m " in sshkit("hosts", "list", env=env).stdout

    config = home / ".ssh" / "config"
    first, _ = timed_ssh(config, env, "bai-vscode", "true")
    _, check = timed_ssh(config, env, "-O", "check", "bai-vscode")
    assert "Master running" in check
    second, _ = timed_ssh(config, env, "bai-vscode", "true")
    print(f"first {first:.3f} s, second {second:.3f} s, ratio {second / first:.2f}")
    assert second < first / 2, (first, second)
    assert len(leftover_processes.processes(home)) == 1

    doctor = sshkit("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"{mux_dir} is private (0700)" in doctor.stdout
    mux_dir.chmod(0o755)
    doctor = sshkit("doctor", env=env)
    assert doctor.returncode == 14
    assert f"the control socket directory {mux_dir} has mode 0755" in doctor.stdout
    mux_dir.chmod(0o700)

    timed_ssh(config, env, "-O", "exit", "bai-vscode")
    assert leftover_processes.wait_none(home, "relay", timeout=5) == []


def test_multiplex_persist_needs_multiplex(api_env: dict[str, str]) -> None:
    proc = sshkit("setup-vscode", "demo", "--yes", "--multiplex-persist", "1h", env=api_env)
    assert proc.returncode == 2
    assert "--multiplex-persist needs --multiplex" in proc.stderr
