"""Start one session's SSH server (OpenSSH or dropbear) on a free loopback port.

Each session's server gets its own config in the state dir. When the emulator
runs as root and mount namespaces work, the server runs in a private mount
namespace with the session home bind-mounted over the login user's home, so a
login lands in the session home like in a container (and nothing touches the
real home). Dropbear has no AuthorizedKeysFile option, so it needs that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.emulator.procs import set_parent_death_signal, terminate_tree


class SshdStartError(RuntimeError):
    """The SSH server could not be started."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _find(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/local/sbin")
    if not path:
        raise SshdStartError(f"{binary} not found")
    return path


def login_home() -> str:
    return pwd.getpwuid(os.getuid()).pw_dir


def home_namespace_available(state_dir: Path) -> bool:
    """Can sshd run with the session home bind-mounted over the login user's home?"""
    if os.getuid() != 0 or not shutil.which("unshare"):
        return False
    home = os.path.realpath(login_home())
    state = os.path.realpath(state_dir)
    if state == home or state.startswith(home.rstrip("/") + "/") or home == "/":
        return False  # the bind mount would hide the state dir from sshd
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@dataclass
class SshdProcess:
    """A running SSH server for one session."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def stop(self) -> None:
        terminate_tree(self.process)


def _openssh_config(session_dir: Path, home: Path, port: int, host_key: Path, user: str) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {session_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {home / '.ssh' / 'authorized_keys'}",
            # The state dir usually lives under /tmp (world-writable), which StrictModes
            # would reject as a parent of AuthorizedKeysFile.
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "AcceptEnv LANG LC_*",
            "LogLevel VERBOSE",
            f"Subsystem sftp internal-sftp -d {home}",
            "",
        ]
    )


async def _wait_banner(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=1.0
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(0.02)
            continue
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=2.0)
        except (OSError, TimeoutError):
            line = b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if line.startswith(b"SSH-"):
            return True
        await asyncio.sleep(0.02)
    return False


async def start_sshd(
    *,
    kind: str,
    session_dir: Path,
    home: Path,
    keys_dir: Path,
    user: str,
    namespace: bool,
) -> SshdProcess:
    """Start the server and wait until it sends its SSH banner. Raises SshdStartError."""
    host_key = keys_dir / "ssh_host_ed25519_key"
    if kind == "openssh" and os.getuid() == 0:
        # Privilege separation needs this directory; the Debian service unit creates it.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    last_error = ""
    for _attempt in range(5):
        port = _free_port("127.0.0.1")
        if kind == "openssh":
            config = session_dir / "sshd_config"
            config.write_text(_openssh_config(session_dir, home, port, host_key, user))
            argv = [_find("sshd"), "-D", "-e", "-f", str(config)]
        elif kind == "dropbear":
            db_key = keys_dir / "dropbear_ed25519_host_key"
            if not db_key.exists():
                subprocess.run(
                    [_find("dropbearconvert"), "openssh", "dropbear", str(host_key), str(db_key)],
                    check=True,
                    capture_output=True,
                )
            argv = [
                _find("dropbear"),
                "-F",
                "-E",
                "-s",
                "-p",
                f"127.0.0.1:{port}",
                "-r",
                str(db_key),
                "-P",
                str(session_dir / "dropbear.pid"),
                "-K",
                "15",
                "-I",
                "0",
            ]
        else:
            raise SshdStartError(f"unknown sshd kind {kind!r}")
        if namespace:
            script = 'h=$0; d=$1; shift; mount --bind "$h" "$d" && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                script,
                str(home),
                login_home(),
                *argv,
            ]
        log_path = session_dir / f"{kind}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=set_parent_death_signal,
                start_new_session=True,
            )
        if await _wait_banner(port, proc, timeout=15.0):
            return SshdProcess(process=proc, port=port, log_path=log_path)
        await asyncio.to_thread(terminate_tree, proc)
        last_error = log_path.read_text(errors="replace")[-2000:]
    raise SshdStartError(f"{kind} did not start: {last_error}")
