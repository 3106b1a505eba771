"""Unit and property tests of the pure ssh_config editor (sshkit.formats.ssh_config)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshkit.errors import SshConfigError
from sshkit.formats.ssh_config import (
    HostBlock,
    SshConfig,
    argv_split,
    quote_arg,
    split_keyword,
    sshkit_host_block,
)

BLOCK = sshkit_host_block(
    alias="bai-vscode",
    hostname="demo",
    user="work",
    identity_file="/home/me/.ssh/id_container",
    proxy_command="/usr/bin/sshkit relay -- %h",
    known_hosts_file="/home/me/.ssh/sshkit/known_hosts",
    host_key_alias="demo.sshkit",
    meta={"session": "demo", "kind": "alias"},
)
WILD = sshkit_host_block(
    alias="*.bai",
    hostname=None,
    user="work",
    identity_file="/home/me/.ssh/id_container",
    proxy_command="/usr/bin/sshkit relay --suffix .bai -- %h",
    host_key="off",
    meta={"kind": "wildcard"},
)


def test_bom_is_refused() -> None:
    with pytest.raises(SshConfigError, match="byte order mark"):
        SshConfig.parse(b"\xef\xbb\xbfHost x\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Host a",
        b"Host a\r\n  User b\r\n",
        b"\n\n\n",
        b"Host\ta\n\tUser=b\n",
        b"\r\n",
        b"Host a\rb\n",
        b"# caf\xe9\n\xff\xfe\n",
        b"Host a\n  User b\r",
    ],
)
def test_round_trip_examples(data: bytes) -> None:
    assert SshConfig.parse(data).render() == data


@given(st.binary(max_size=400).filter(lambda b: not b.startswith(b"\xef\xbb\xbf")))
def test_round_trip_any_bytes(data: bytes) -> None:
    assert SshConfig.parse(data).render() == data


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Host web", ("Host", "web")),
        ("  HostName=web.example.com", ("HostName", "web.example.com")),
        ("User = deploy", ("User", "deploy")),
        ("Port= 22  \r", ("Port", "22")),
        ("\tUser\tx", ("User", "x")),
        ("# comment", None),
        ("   ", None),
    ],
)
def test_split_keyword(line: str, expected: tuple[str, str] | None) -> None:
    assert split_keyword(line) == expected


@pytest.mark.parametrize(
    ("rest", "args"),
    [
        ("a b", ["a", "b"]),
        ('"my key" x', ["my key", "x"]),
        ("'single q' y", ["single q", "y"]),
        ("web # comment", ["web"]),
        ("22#x", ["22#x"]),
        (r"C:\Users\me\.ssh\id", [r"C:\Users\me\.ssh\id"]),
        (r"a\ b", ["a b"]),
        (r'"a\"b"', ['a"b']),
        ('a"b c"d', ["ab cd"]),
    ],
)
def test_argv_split_like_openssh(rest: str, args: list[str]) -> None:
    assert argv_split(rest) == args


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(SshConfigError):
        argv_split('"open')


safe_values = st.text(
    alphabet=st.characters(blacklist_characters='\r\n\0"', blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda v: not v.endswith("\\"))


@given(safe_values)
def test_quote_arg_round_trips(value: str) -> None:
    assert argv_split(quote_arg(value)) == [value]


@pytest.mark.parametrize("bad", ['a"b', "a\nb", "dir\\"])
def test_quote_arg_refuses_what_ssh_cannot_read(bad: str) -> None:
    with pytest.raises(SshConfigError):
        quote_arg(bad)


def test_block_text_is_the_template() -> None:
    """templates/ssh_config_block.txt documents exactly what sshkit writes."""
    from pathlib import Path

    cfg = SshConfig([]).upsert(BLOCK).upsert(WILD)
    template = Path(__file__).parents[1] / "templates" / "ssh_config_block.txt"
    assert template.read_bytes() == cfg.render()


def test_upsert_replaces_in_place_and_remove_restores() -> None:
    original = b"# mine\nUser me\nHost *\n  IdentityFile ~/.ssh/id\n"
    cfg = SshConfig.parse(original)
    once = cfg.upsert(BLOCK)
    assert once.render().startswith(b"# BEGIN SSHKIT bai-vscode")
    assert once.render().endswith(original)
    twice = once.upsert(BLOCK).upsert(WILD).upsert(BLOCK)
    assert twice.render().count(b"# BEGIN SSHKIT bai-vscode") == 1
    assert twice.remove("bai-vscode").remove("*.bai").render() == original


def test_crlf_files_get_crlf_blocks() -> None:
    original = b"Host a\r\n  User b\r\n"
    out = SshConfig.parse(original).upsert(BLOCK).render()
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert SshConfig.parse(out).remove("bai-vscode").render() == original


def test_no_trailing_newline_is_kept() -> None:
    original = b"Host a\n  User b"
    out = SshConfig.parse(original).upsert(BLOCK).render()
    assert out.endswith(b"  User b")
    assert SshConfig.parse(out).remove("bai-vscode").render() == original


@pytest.mark.parametrize(
    "text",
    [
        "# BEGIN SSHKIT a\n",
        "# END SSHKIT a\n",
        "# BEGIN SSHKIT a\n# END SSHKIT a\n# BEGIN SSHKIT a\n# END SSHKIT a\n",
        "# BEGIN SSHKIT a\n# BEGIN SSHKIT b\n# END SSHKIT b\n# END SSHKIT a\n",
        "# BEGIN SSHKIT a\n# END SSHKIT b\n",
        "# begin   sshkit a\n",  # a mangled marker is still a marker
        "# BEGIN SSHKIT\n# END SSHKIT\n",
    ],
)
def test_broken_markers_refused(text: str) -> None:
    cfg = SshConfig.parse(text.encode())
    for op in (lambda: cfg.upsert(BLOCK), lambda: cfg.remove("a"), cfg.managed_blocks):
        with pytest.raises(SshConfigError) as info:
            op()
        assert "sshkit changed nothing" in (info.value.hint or "")


def test_handwritten_block_disabled_and_restored() -> None:
    original = (
        b"Host web\n  HostName w\n"
        b"Host bai-vscode\n  User work\n  Port 49335\n  # note\n\n"
        b"Host other\n  Port 1\n"
    )
    cfg = SshConfig.parse(original)
    found = cfg.handwritten_blocks("bai-vscode")
    assert [(b.start, b.end) for b in found] == [(2, 4)]
    disabled = cfg.upsert(BLOCK).disable_handwritten("bai-vscode")
    text = disabled.render().decode()
    assert "#sshkit-disabled bai-vscode: Host bai-vscode\n" in text
    assert "#sshkit-disabled bai-vscode:   Port 49335\n" in text
    assert "  # note\n" in text and "#sshkit-disabled bai-vscode:   # note" not in text
    assert disabled.handwritten_blocks("bai-vscode") == []
    assert disabled.remove("bai-vscode").render() == original


def test_multi_pattern_host_is_not_disabled() -> None:
    cfg = SshConfig.parse(b"Host bai-vscode legacy\n  Port 1\n")
    assert cfg.handwritten_blocks("bai-vscode") == []
    assert cfg.host_lines_mentioning("bai-vscode") == [0]


def test_invalid_blocks_refused() -> None:
    with pytest.raises(SshConfigError):
        HostBlock(alias="bad alias", options=[("User", "x")]).render_lines("\n")
    with pytest.raises(SshConfigError):
        HostBlock(alias="a", options=[("User", "x\ny")]).render_lines("\n")
    with pytest.raises(SshConfigError):
        sshkit_host_block(
            alias="a",
            hostname="x; rm",
            user="w",
            identity_file="/k",
            proxy_command="p %h",
            host_key="off",
        )


def test_percent_in_identity_path_is_escaped() -> None:
    block = sshkit_host_block(
        alias="a",
        hostname="s",
        user="w",
        identity_file="/home/me/50% off/key",
        proxy_command="p %h",
        host_key="off",
    )
    assert ("IdentityFile", '"/home/me/50%% off/key"') in list(block.options)


# -- properties over generated configs ----------------------------------------------------------

line_pool = st.sampled_from(
    [
        "Host web",
        "Host *",
        "Host bai-vscode",
        "Match all",
        'Match host x exec "true"',
        "  User u",
        "\tIdentityFile ~/.ssh/id",
        "Port=22",
        "# a comment",
        "",
        "   ",
        "Include conf.d/*",
        "ProxyCommand nc %h %p # not a comment",
        "HostName=h",
    ]
)


@st.composite
def configs(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(line_pool, max_size=15))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines)
    if lines and draw(st.booleans()):
        text += eol
    return text.encode()


@settings(max_examples=200)
@given(configs(), st.booleans())
def test_upsert_is_idempotent_and_removable(data: bytes, with_wild: bool) -> None:
    cfg = SshConfig.parse(data)
    once = cfg.upsert(BLOCK)
    if with_wild:
        once = once.upsert(WILD)
    again = once.upsert(BLOCK)
    if with_wild:
        again = again.upsert(WILD)
    assert again.render() == once.render()
    # the blocks sit at the top
    assert once.render().startswith(b"# BEGIN SSHKIT ")
    removed = once.remove("bai-vscode")
    if with_wild:
        removed = removed.remove("*.bai")
    assert removed.render() == data
    # disabling a hand-written block and removing sshkit's restores too
    dis = once.disable_handwritten("bai-vscode")
    back = dis.remove("bai-vscode")
    if with_wild:
        back = back.remove("*.bai")
    assert back.render() == data
