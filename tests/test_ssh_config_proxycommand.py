"""ProxyCommand quoting under POSIX sh, Windows CreateProcess and paramiko (shlex) rules."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshkit.errors import SshConfigError
from sshkit.formats.proxycommand import (
    expand_tokens,
    paramiko_command,
    proxycommand_line,
    quote_posix,
)


def createprocess_argv(cmdline: str) -> list[str]:
    """Reference parser of a Windows command line (CommandLineToArgvW / MSVC CRT rules).

    The program name: up to the next space, or inside double quotes (no escapes). Arguments:
    2n backslashes + quote → n backslashes and a quote toggle; 2n+1 → n backslashes and a
    literal quote; other backslashes are literal.
    """
    i, n = 0, len(cmdline)
    if cmdline.startswith('"'):
        end = cmdline.index('"', 1)
        prog, i = cmdline[1:end], end + 1
    else:
        end = cmdline.find(" ")
        end = n if end < 0 else end
        prog, i = cmdline[:end], end
    args = [prog]
    while i < n:
        while i < n and cmdline[i] in " \t":
            i += 1
        if i >= n:
            break
        cur: list[str] = []
        inq = False
        while i < n and (inq or cmdline[i] not in " \t"):
            if cmdline[i] == "\\":
                j = i
                while j < n and cmdline[j] == "\\":
                    j += 1
                count = j - i
                if j < n and cmdline[j] == '"':
                    cur.append("\\" * (count // 2))
                    if count % 2:
                        cur.append('"')
                        i = j + 1
                    else:
                        i = j
                    continue
                cur.append("\\" * count)
                i = j
                continue
            if cmdline[i] == '"':
                inq = not inq
                i += 1
                continue
            cur.append(cmdline[i])
            i += 1
        args.append("".join(cur))
    return args


def test_reference_parser_sanity() -> None:
    assert createprocess_argv('"C:\\Program Files\\x.exe" a "b c"') == [
        "C:\\Program Files\\x.exe",
        "a",
        "b c",
    ]


# -- POSIX ------------------------------------------------------------------------------------


def test_posix_plain_path_is_bare() -> None:
    assert (
        proxycommand_line(["/usr/bin/sshkit", "relay", "%h"], "posix") == "/usr/bin/sshkit relay %h"
    )


def test_posix_path_with_spaces_is_double_quoted() -> None:
    line = proxycommand_line(["/opt/my tools/sshkit", "relay", "--suffix", ".bai", "%h"], "posix")
    assert line == '"/opt/my tools/sshkit" relay --suffix .bai %h'
    # paramiko reads the same words (after token expansion)
    assert shlex.split(expand_tokens(line, {"h": "s.bai"})) == [
        "/opt/my tools/sshkit",
        "relay",
        "--suffix",
        ".bai",
        "s.bai",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/opt/my tools/sshkit",
        "/opt/it's here/sshkit",
        '/opt/quo"te/sshkit',
        "/opt/$HOME/`x`/sshkit",
        "/opt/back\\slash dir/sshkit",
        "/opt/50% off/sshkit",
        "/opt/semi;colon & amp/sshkit",
    ],
)
def test_posix_quoting_runs_under_sh(path: str, tmp_path: Path) -> None:
    """Exactly what OpenSSH does: expand %-tokens, then `/bin/sh -c "exec <line>"`."""
    exe = tmp_path / path.lstrip("/")
    exe.parent.mkdir(parents=True)
    out = tmp_path / "argv.json"
    exe.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sys.argv))\n"
    )
    exe.chmod(0o755)
    line = proxycommand_line([str(exe), "relay", "%h"], "posix")
    expanded = expand_tokens(line, {"h": "sess"})
    subprocess.run(["/bin/sh", "-c", "exec " + expanded], check=True)
    assert json.loads(out.read_text()) == [str(exe), "relay", "sess"]
    # paramiko: shlex.split of the expanded line gives the same argv
    assert shlex.split(expanded) == [str(exe), "relay", "sess"]


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=30,
    )
)
def test_posix_quote_round_trips_through_shlex(word: str) -> None:
    assert shlex.split(quote_posix(word)) == [word]


# -- Windows ----------------------------------------------------------------------------------


def test_windows_path_with_spaces() -> None:
    exe = "C:\\Program Files\\sshkit\\sshkit.exe"
    line = proxycommand_line([exe, "relay", "%h"], "windows")
    assert line == '"C:/Program Files/sshkit/sshkit.exe" relay %h'
    expanded = expand_tokens(line, {"h": "sess"})
    # CreateProcess (Win32-OpenSSH: no shell, the 'exec ' prefix dropped)
    assert createprocess_argv(expanded) == ["C:/Program Files/sshkit/sshkit.exe", "relay", "sess"]
    # paramiko's shlex on Windows: forward slashes survive, unlike backslashes outside quotes
    assert shlex.split(expanded) == ["C:/Program Files/sshkit/sshkit.exe", "relay", "sess"]
    # Git-Bash's sh
    assert subprocess.run(
        ["/bin/sh", "-c", f"printf '%s\\n' {expanded}"], capture_output=True, check=True, text=True
    ).stdout.splitlines() == ["C:/Program Files/sshkit/sshkit.exe", "relay", "sess"]


def test_windows_plain_path_is_still_quoted() -> None:
    line = proxycommand_line(
        ["C:\\Tools\\sshkit.exe", "relay", "--suffix", ".bai", "%h"], "windows"
    )
    assert line == '"C:/Tools/sshkit.exe" relay --suffix .bai %h'
    assert createprocess_argv(line)[0] == "C:/Tools/sshkit.exe"


def test_windows_percent_is_doubled() -> None:
    line = proxycommand_line(["C:\\100% tools\\sshkit.exe", "relay", "%h"], "windows")
    assert line == '"C:/100%% tools/sshkit.exe" relay %h'
    assert createprocess_argv(expand_tokens(line, {"h": "s"}))[0] == "C:/100% tools/sshkit.exe"


def test_windows_refuses_double_quote() -> None:
    with pytest.raises(SshConfigError):
        proxycommand_line(['C:\\a"b\\x.exe', "relay", "%h"], "windows")


def test_line_breaks_refused() -> None:
    with pytest.raises(SshConfigError):
        proxycommand_line(["/bin/x\nrm", "relay", "%h"], "posix")


# -- paramiko ----------------------------------------------------------------------------------


def test_paramiko_command_is_shlex_inverse() -> None:
    argv = ["/opt/my tools/it's/sshkit", "relay", "--suffix", ".bai", "%h"]
    cmd = paramiko_command(argv, {"h": "new.bai"})
    assert shlex.split(cmd) == ["/opt/my tools/it's/sshkit", "relay", "--suffix", ".bai", "new.bai"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh")
def test_real_ssh_runs_quoted_proxycommand(tmp_path: Path) -> None:
    """OpenSSH itself starts the relay at a path with spaces and passes %h."""
    exe = tmp_path / "my tools" / "fake sshkit"
    exe.parent.mkdir()
    out = tmp_path / "argv.json"
    exe.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sys.argv))\nsys.exit(1)\n"
    )
    exe.chmod(0o755)
    cfg = tmp_path / "cfg"
    cfg.write_text(
        "Host *.bai\n    ProxyCommand "
        + proxycommand_line([str(exe), "relay", "--suffix", ".bai", "%h"], "posix")
        + "\n"
    )
    env = dict(os.environ, SHELL="/bin/sh")
    subprocess.run(
        ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "sess.bai", "true"],
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert json.loads(out.read_text()) == [str(exe), "relay", "--suffix", ".bai", "sess.bai"]
