"""`sshkit.relay.liveness`: the signs that ssh is gone, on real pipes and sockets."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from sshkit.relay.liveness import hangup_check, peer_gone_check

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="poll() is POSIX")


def test_pipe_reader_closing_is_a_hang_up() -> None:
    r, w = os.pipe()
    try:
        check = hangup_check(w)
        assert check is not None
        assert not check()
        os.close(r)
        assert check()
    finally:
        os.close(w)


def test_pipe_with_a_reader_elsewhere_is_not_a_hang_up() -> None:
    # A forked ssh holds a copy of the read end: closing ours means nothing.
    r, w = os.pipe()
    other = os.dup(r)
    try:
        check = hangup_check(w)
        assert check is not None
        os.close(r)
        assert not check()
        os.close(other)
        assert check()
    finally:
        os.close(w)


def test_socket_peer_closing_is_a_hang_up() -> None:
    a, b = socket.socketpair()
    with a:
        check = hangup_check(a.fileno())
        assert check is not None
        assert not check()
        b.close()
        assert check()


def test_a_file_cannot_hang_up(tmp_path: Path) -> None:
    with (tmp_path / "f").open("wb") as f:
        assert hangup_check(f.fileno()) is None
        # Only the parent watch is left; our parent runs.
        assert peer_gone_check(f.fileno())() is None


def test_peer_gone_names_the_hang_up() -> None:
    r, w = os.pipe()
    try:
        check = peer_gone_check(w)
        assert check() is None
        os.close(r)
        assert check() == "stdout hung up (ssh is gone)"
    finally:
        os.close(w)
