"""authorized_keys lines sshd rejects, restricted keys and risky removals (issue 14, item 12)."""

from __future__ import annotations

import pytest

from sshkit.errors import UsageError
from sshkit.formats import authorized_keys as ak
from sshkit.services import authorized_keys as svc
from tests.test_authorized_keys_merge_loop import RemoteFile, no_sleep, pub_line


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ("badopt", False),
        ("no-pty", True),
        ("NO-PTY", True),
        ("restrict,pty", True),
        ('command="echo hi"', True),
        ("command=echo", False),  # sshd requires the quotes
        ('no-pty="x"', False),  # a flag with a value
        ('from="10.0.0.0/8",no-agent-forwarding', True),
        ('permitopen="host:22",badopt', False),
        ("cert-authority", True),
        ('environment="A=b,c"', True),
    ],
)
def test_sshd_option_names(options: str, accepted: bool) -> None:
    assert ak.sshd_accepts_options(options) is accepted


def test_key_only_on_a_rejected_line_is_added() -> None:
    line = pub_line("me")
    remote = RemoteFile(f"badopt {line}\n".encode())
    result = svc.push_keys(remote, ak.parse_new_keys(line, source="k"), sleep=no_sleep)
    assert [k.comment for k in result.added] == ["me"]
    assert remote.content == f"badopt {line}\n{line}\n".encode()


def test_present_but_restricted_key_is_reported() -> None:
    line = pub_line("me")
    remote = RemoteFile(f'restrict,command="/bin/false" {line}\n'.encode())
    result = svc.push_keys(remote, ak.parse_new_keys(line, source="k"), sleep=no_sleep)
    assert not result.added and remote.writes == []
    assert any("restrict" in w and "command" in w for w in result.warnings), result.warnings


def test_removing_the_last_usable_key_needs_confirmation() -> None:
    only, broken = pub_line("only"), pub_line("broken")
    remote = RemoteFile(f"{only}\nbadopt {broken}\n".encode())
    fp = ak.parse_new_keys(only, source="k")[0].fingerprint
    with pytest.raises(UsageError, match="no key sshd accepts would be left"):
        svc.push_keys(remote, [], [fp], sleep=no_sleep)
    assert remote.writes == []
    asked: list[str] = []
    svc.push_keys(remote, [], [fp], sleep=no_sleep, confirm=lambda r: asked.append(r) or True)
    assert asked and remote.writes


def test_removing_the_keypairs_own_key_needs_confirmation() -> None:
    own, other = pub_line("keypair"), pub_line("other")
    remote = RemoteFile(f"{own}\n{other}\n".encode())
    fp = ak.parse_new_keys(own, source="k")[0].fingerprint
    with pytest.raises(UsageError, match="keypair's own key"):
        svc.push_keys(remote, [], [fp], sleep=no_sleep, protected=[fp], confirm=lambda r: False)
    assert remote.writes == []


def test_removing_an_ordinary_key_asks_nothing() -> None:
    gone, stays = pub_line("gone"), pub_line("stays")
    remote = RemoteFile(f"{gone}\n{stays}\n".encode())
    fp = ak.parse_new_keys(gone, source="k")[0].fingerprint
    svc.push_keys(remote, [], [fp], sleep=no_sleep)
    assert remote.content == f"{stays}\n".encode()
