"""The merge-upload-verify loop of sshkit.services.authorized_keys, with scripted interleavings.

The remote file here is an in-memory byte string whose `on_write` hook plays the
other client: it lets a test place a concurrent writer exactly between our upload
and our re-reads, which a real race only hits some of the time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sshkit.errors import ServerError, UsageError
from sshkit.formats import authorized_keys as ak
from sshkit.services import authorized_keys as svc


def pub_line(comment: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


@dataclass
class RemoteFile:
    """One remote authorized_keys; `reads_after_write` scripts what other clients do."""

    content: bytes | None
    label: str = "authorized_keys (test)"
    path: str = "authorized_keys"
    writes: list[bytes] = field(default_factory=list)
    # Called with the number of reads since our last write, before each read.
    other_client: Callable[[RemoteFile, int], None] | None = None
    _reads_since_write: int = 0
    ignore_writes: bool = False

    def read(self) -> bytes | None:
        if self.other_client is not None and self.writes:
            self.other_client(self, self._reads_since_write)
        self._reads_since_write += 1
        return self.content

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self._reads_since_write = 0
        if not self.ignore_writes:
            self.content = data


def no_sleep(_: float) -> None:
    return None


def test_lost_update_right_after_upload_is_redone_on_top_of_theirs() -> None:
    mine, theirs = pub_line("mine"), pub_line("theirs")
    remote = RemoteFile(b"# base\n")

    def overwrite_once(f: RemoteFile, reads: int) -> None:
        if len(f.writes) == 1 and reads == 0:  # they read "# base" before we wrote
            f.content = f"# base\n{theirs}\n".encode()

    remote.other_client = overwrite_once
    result = svc.push_keys(remote, ak.parse_new_keys(mine, source="k"), sleep=no_sleep)
    assert result.uploads == 2
    assert remote.content == f"# base\n{theirs}\n{mine}\n".encode()


def test_overwrite_after_the_first_check_is_caught_by_the_second() -> None:
    mine, theirs = pub_line("mine"), pub_line("theirs")
    remote = RemoteFile(b"")

    def overwrite_late(f: RemoteFile, reads: int) -> None:
        if len(f.writes) == 1 and reads == 1:  # lands during our settle pause
            f.content = f"{theirs}\n".encode()

    remote.other_client = overwrite_late
    result = svc.push_keys(remote, ak.parse_new_keys(mine, source="k"), sleep=no_sleep)
    assert result.uploads == 2
    assert remote.content == f"{theirs}\n{mine}\n".encode()


def test_a_removed_key_put_back_by_someone_else_is_removed_again() -> None:
    gone, stays = pub_line("gone"), pub_line("stays")
    start = f"{gone}\n{stays}\n".encode()
    remote = RemoteFile(start)

    def restore(f: RemoteFile, reads: int) -> None:
        if len(f.writes) == 1 and reads == 0:
            f.content = start

    remote.other_client = restore
    fp = ak.parse_new_keys(gone, source="k")[0].fingerprint
    result = svc.push_keys(remote, [], [fp], sleep=no_sleep)
    assert result.uploads == 2 and [k.comment for k in result.removed] == ["gone"]
    assert remote.content == f"{stays}\n".encode()


def test_endless_overwriting_gives_up_after_the_bound() -> None:
    remote = RemoteFile(b"")

    def always(f: RemoteFile, reads: int) -> None:
        if reads == 0:
            f.content = f"{pub_line('other')}\n".encode()

    remote.other_client = always
    with pytest.raises(ServerError, match="overwritten by another client"):
        svc.push_keys(remote, ak.parse_new_keys(pub_line("mine"), source="k"), sleep=no_sleep)
    assert len(remote.writes) == svc.MAX_ATTEMPTS


def test_an_upload_without_effect_is_reported_not_retried_forever() -> None:
    remote = RemoteFile(b"# old\n", ignore_writes=True)
    with pytest.raises(ServerError, match="did not change"):
        svc.push_keys(remote, ak.parse_new_keys(pub_line("mine"), source="k"), sleep=no_sleep)
    assert len(remote.writes) == 2


def test_nothing_to_do_and_dry_run_write_nothing() -> None:
    line = pub_line("here")
    remote = RemoteFile(f"{line}\n".encode())
    keys = ak.parse_new_keys(line, source="k")
    assert not svc.push_keys(remote, keys, sleep=no_sleep).uploaded
    new = ak.parse_new_keys(pub_line("new"), source="k")
    dry = svc.push_keys(remote, new, dry_run=True, sleep=no_sleep)
    assert dry.dry_run and "+ssh-ed25519" in dry.diff
    assert remote.writes == []


def test_unknown_remove_fingerprint_is_a_usage_error_and_writes_nothing() -> None:
    remote = RemoteFile(f"{pub_line('x')}\n".encode())
    with pytest.raises(UsageError, match="no key with fingerprint"):
        svc.push_keys(remote, [], [ak.fingerprint_sha256(b"nope")], sleep=no_sleep)
    assert remote.writes == []


@pytest.mark.parametrize(
    ("mode", "bad"), [(0o600, False), (0o644, False), (0o664, True), (0o646, True)]
)
def test_mode_problem_flags_group_or_world_writable(mode: int, bad: bool) -> None:
    assert (svc.mode_problem(mode) is not None) is bad
