"""Hostile session names, aliases and identity paths (issue 14, items 3, 10, 11)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshkit.errors import ExitCode, SshConfigError, UsageError
from sshkit.formats import exports as fmt
from sshkit.formats.names import check_alias, check_session_name
from sshkit.formats.ssh_config import HostBlock
from sshkit.services.exports import relay_command
from sshkit.services.vscode import SetupOptions, build_blocks
from tests.test_exports import windows_argv

SSHKIT = Path(sys.executable).parent / "sshkit"
INJECTIONS = [
    "x;touch${IFS}pwned;exit",
    "a b",
    "--help",
    "-oProxyCommand=id",
    "$(id)",
    "`id`",
    'a"b',
    "a'b",
    "a|b",
    "a&b",
    "",
    "a\nb",
    "%host",
]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SSHKIT), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("name", INJECTIONS)
def test_session_names_that_could_run_a_command_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        check_session_name(name)


@pytest.mark.parametrize("name", ["s1", "my-session", "a.b_c@d+e", "0f3c9a1e-1234-4abc-9def-0123"])
def test_ordinary_session_names_pass(name: str) -> None:
    assert check_session_name(name) == name


@pytest.mark.parametrize("client", ["putty", "winscp", "filezilla"])
@pytest.mark.parametrize("name", ["x;touch${IFS}pwned;exit", "--help", "a b"])
def test_export_refuses_a_hostile_session_name(client: str, name: str, tmp_path: Path) -> None:
    key = tmp_path / "k.ppk"
    key.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    out = tmp_path / "out"
    proc = run("export", client, "--key", str(key), "-o", str(out), "--", name, cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


def test_export_refuses_an_alias_with_a_leading_dash(tmp_path: Path) -> None:
    key = tmp_path / "k.ppk"
    key.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    proc = run("export", "putty", "--key", str(key), "--alias=-x", "-o", "-", "s1", cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr


def test_putty_proxy_command_ends_options_before_the_host() -> None:
    cmd = fmt.putty_proxy_command(relay_command(["C:\\Program Files\\sshkit.exe"], None))
    ran = fmt.putty_command_unescape(cmd, host="s1", port=22)
    assert windows_argv(ran) == ["C:\\Program Files\\sshkit.exe", "relay", "--", "s1"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_unix_putty_runs_the_exported_command_with_sh_and_gets_one_argument(
    tmp_path: Path,
) -> None:
    # Unix PuTTY/plink run the local proxy command with `sh -c`: the argv sh gives the
    # program must be exactly [exe, relay, --, SESSION].
    exe = tmp_path / "my tools" / "sshkit"
    exe.parent.mkdir()
    exe.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    exe.chmod(0o755)
    cmd = fmt.putty_proxy_command(relay_command([str(exe)], "p1"))
    ran = fmt.putty_command_unescape(cmd, host="s1", port=22)
    out = subprocess.run(["sh", "-c", ran], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["relay", "--profile", "p1", "--", "s1"]


def test_setup_vscode_blocks_write_relay_dashdash_h(tmp_path: Path) -> None:
    blocks = build_blocks(
        SetupOptions(session="s1"), tmp_path / "id", launcher=["/usr/bin/sshkit"], platform="posix"
    )
    for block in blocks:
        proxy = dict(block.options)["ProxyCommand"]
        assert proxy.endswith(" -- %h"), proxy


@pytest.mark.parametrize("name", ["--help", "-x", "a;b"])
def test_setup_vscode_refuses_hostile_session_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        build_blocks(SetupOptions(session=name), tmp_path / "id", launcher=["/x"])


def test_host_block_refuses_a_leading_dash_alias() -> None:
    with pytest.raises(SshConfigError):
        HostBlock(alias="-oProxyCommand=x", options=[("User", "u")]).validate()
    with pytest.raises(UsageError):
        check_alias("-x")


def test_relay_reads_a_dashed_session_after_dashdash_as_a_name_and_refuses_it() -> None:
    proc = run("relay", "--", "--help")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "Usage" not in proc.stdout
    assert proc.stdout == ""
    assert "starts with '-'" in proc.stderr


def test_relay_accepts_dashdash_before_an_ordinary_name() -> None:
    # Not logged in: the relay got past parsing and the name check.
    proc = run("relay", "--", "s1")
    assert proc.returncode == ExitCode.CONFIG, proc.stderr


def test_real_ssh_runs_the_relay_with_dashdash_before_the_session(tmp_path: Path) -> None:
    """Real ssh expands the written blocks: the relay gets `relay [--suffix S] -- NAME`."""
    if shutil.which("ssh") is None:
        pytest.skip("needs ssh")
    record = tmp_path / "argv"
    fake = tmp_path / "fake-sshkit"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {record}\nexit 1\n')
    fake.chmod(0o755)
    blocks = build_blocks(
        SetupOptions(session="s1", alias="bai-t"),
        tmp_path / "id",
        launcher=[str(fake)],
        platform="posix",
    )
    config = tmp_path / "config"
    config.write_text("".join(line.text + "\n" for b in blocks for line in b.render_lines("\n")))
    for host in ("bai-t", "x-help.bai"):
        subprocess.run(
            [
                "ssh",
                "-F",
                str(config),
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                host,
                "true",
            ],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    assert record.read_text().splitlines() == [
        "relay",
        "--",
        "s1",
        "relay",
        "--suffix",
        ".bai",
        "--",
        "x-help.bai",
    ]


# ------------------------------------------------------------ 11: ${ in IdentityFile


def test_identity_path_with_dollar_brace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\$\{"):
        build_blocks(
            SetupOptions(session="s1", identity=Path("/k/${USER}")),
            Path("/k/${USER}"),
            launcher=["/usr/bin/sshkit"],
            platform="posix",
        )


def test_identity_path_with_plain_dollar_is_kept(tmp_path: Path) -> None:
    blocks = build_blocks(
        SetupOptions(session="s1"), Path("/k/a$b"), launcher=["/usr/bin/sshkit"], platform="posix"
    )
    assert "a$b" in dict(blocks[0].options)["IdentityFile"]


@pytest.mark.parametrize(
    "exe", ["/opt/$HOME/sshkit", "/opt/`id`/sshkit", "C:\\$Recycle\\sshkit.exe"]
)
def test_proxy_command_refuses_what_sh_would_expand(exe: str) -> None:
    with pytest.raises(UsageError, match="expanded by the shell"):
        fmt.proxy_command_line(exe, ["relay"])
