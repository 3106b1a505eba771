"""Two sshkit runs editing the same file at once both succeed (issue 14, item 8)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sshkit import localfs
from sshkit.errors import LocalFileError

SETUP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sshkit.services.vscode import SetupOptions, apply_setup, plan_setup

    session, config, key, start = sys.argv[1:5]
    import time
    while time.time() < float(start):
        time.sleep(0.001)
    opts = SetupOptions(
        session=session, alias="a-" + session, identity=Path(key), ssh_config=Path(config)
    )
    result = apply_setup(plan_setup(opts, None), None)
    sys.exit(14 if result.mismatches else 0)
    """
)


def test_two_setup_vscode_runs_at_once_both_succeed(tmp_path: Path) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "ssh_config"
    config.write_text("Host other\n    User me\n")
    for round_ in range(15):
        start = time.time() + 1.0
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SETUP,
                    f"s{round_}{side}",
                    str(config),
                    str(key),
                    str(start),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            for side in "xy"
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        text = config.read_text()
        for side in "xy":
            assert f"Host a-s{round_}{side}\n" in text, (round_, side)
    assert "Host other\n" in config.read_text()


def test_lock_wait_is_bounded_with_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with localfs.file_lock(target):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        # flock locks belong to open file descriptions: a second open in-process conflicts too.
        with (
            pytest.raises(LocalFileError, match="locked by another sshkit command"),
            localfs.file_lock(target, timeout=0.3),
        ):
            pass
    finally:
        release.set()
        thread.join()
    with localfs.file_lock(target, timeout=1):
        pass


def test_parallel_filezilla_exports_keep_both_sites(tmp_path: Path) -> None:
    key = tmp_path / "k.ppk"
    key.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    out = tmp_path / "sitemanager.xml"
    sshkit = Path(sys.executable).parent / "sshkit"
    for round_ in range(5):
        procs = [
            subprocess.Popen(
                [
                    str(sshkit),
                    "export",
                    "filezilla",
                    f"s{round_}{side}",
                    "--key",
                    str(key),
                    "-o",
                    str(out),
                ],
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            for side in "xy"
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    names = {s.findtext("Name") for s in ET.fromstring(out.read_bytes()).iter("Server")}
    assert names == {f"bai-s{r}{side}" for r in range(5) for side in "xy"}
