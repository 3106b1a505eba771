"""fix-perms judged by a real ssh login: a 0644 key is refused by ssh until fixed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sshkit.errors import ExitCode
from tests.emulator_fixture import Emulator
from tests.test_account_emulator import api_env, default_key, ssh_login, sshkit


def test_fix_perms_makes_a_0644_key_usable(emulator: Emulator, hermetic_home: Path) -> None:
    env = api_env(emulator)
    assert sshkit("fetch-key", emulator.session, env=env).returncode == 0
    key = default_key(hermetic_home)
    os.chmod(key, 0o644)
    refused = ssh_login(emulator, key)
    assert refused.returncode != 0
    assert "UNPROTECTED PRIVATE KEY FILE" in refused.stderr
    check = sshkit("fix-perms", "--check")
    assert check.returncode == ExitCode.CHECK_FAILED
    assert str(key) in check.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o644
    assert sshkit("fix-perms").returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    accepted = ssh_login(emulator, key)
    assert accepted.returncode == 0, accepted.stderr
