"""Test-wide fixtures: a hermetic HOME for every test, and the emulator launcher."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import leftover_processes

pytest_plugins = ["tests.emulator_fixture"]

_SCRUBBED_PREFIXES = ("SSHKIT_", "BACKEND_")


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME and XDG dirs into tmp_path and drop sshkit/Backend.AI env vars.

    No test may ever read or write the real ~/.ssh or ~/.config.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture(autouse=True)
def no_relay_left(hermetic_home: Path) -> Iterator[None]:
    """Fail a test that leaves a relay (or a backgrounded ssh) running once it is over.

    A relay ends when its ssh is gone; the close handshake may take a moment, so a
    few seconds are allowed before the leftovers are killed and the test fails.
    """
    yield
    ssh_left = leftover_processes.processes(hermetic_home, "ssh")
    leftover_processes.kill_all(ssh_left)
    relays = leftover_processes.wait_none(hermetic_home, "relay", timeout=5.0)
    leftover_processes.kill_all(relays)
    assert not relays, f"relay process(es) {relays} still running after the test"
    assert not ssh_left, f"ssh process(es) {ssh_left} still running after the test"
