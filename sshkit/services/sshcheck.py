"""`ssh -G` as ground truth: what OpenSSH will really use for a host.

sshkit never trusts its own reading of a config: after writing (and before replacing the file)
it asks ``ssh -G -F FILE HOST`` and compares the effective values with the ones it wrote.
``-F`` is always passed because OpenSSH finds ``~/.ssh/config`` through the passwd database,
not ``$HOME`` (spec §6.3), and because ``--ssh-config`` may name another file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sshkit.errors import SshConfigError
from sshkit.formats.proxycommand import expand_tokens
from sshkit.formats.ssh_config import WHOLE_LINE_KEYWORDS, HostBlock, argv_split

# How ssh -G prints some values differently from how they are written.
_YES_NO = {"no": "false", "yes": "true"}


@dataclass(frozen=True)
class Mismatch:
    """One option whose effective value is not the one sshkit wrote."""

    key: str
    expected: str
    actual: str


def find_ssh() -> str | None:
    """The ``ssh`` executable on PATH, or None."""
    return shutil.which("ssh")


def ssh_g(
    config: Path, host: str, *, ssh: str | None = None, timeout: float = 30
) -> dict[str, list[str]]:
    """Run ``ssh -G -F config host`` and return keyword → values (in order).

    Raises SshConfigError when ssh rejects the configuration (exit status != 0), quoting the
    first line ssh printed; LocalFileError-like problems (no ssh) raise SshConfigError too.
    """
    exe = ssh or find_ssh()
    if exe is None:
        raise SshConfigError("ssh is not installed (or not on PATH)")
    try:
        proc = subprocess.run(
            [exe, "-G", "-F", str(config), "--", host],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SshConfigError(f"could not run ssh -G: {exc}") from None
    if proc.returncode != 0:
        err = [
            ln
            for ln in proc.stderr.decode(errors="replace").splitlines()
            if ln.strip() and "Pseudo-terminal" not in ln
        ]
        first = err[0] if err else f"exit status {proc.returncode}"
        raise SshConfigError(f"ssh rejects the configuration {config}: {first}")
    out: dict[str, list[str]] = {}
    for line in proc.stdout.decode(errors="surrogateescape").splitlines():
        key, _, value = line.partition(" ")
        if key:
            out.setdefault(key, []).append(value)
    return out


def config_complaints(
    config: Path, *, ssh: str | None = None, timeout: float = 30
) -> list[str] | None:
    """ssh's complaints about ``config`` when it rejects the file, else None.

    None also when ssh is not installed or cannot run: then nothing can be proved either way.
    """
    exe = ssh or find_ssh()
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "-G", "-F", str(config), "--", "sshkit-check"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines or [f"exit status {proc.returncode}"]


def expected_values(block: HostBlock, host: str) -> dict[str, str]:
    """What ``ssh -G`` should print for the options of ``block`` when asked about ``host``."""
    out: dict[str, str] = {}
    for key, raw in block.options:
        k = key.lower()
        if k in WHOLE_LINE_KEYWORDS:
            value = raw
        else:
            args = argv_split(raw)
            value = " ".join(args)
        if k == "hostname":
            value = expand_tokens(value, {"h": host}).lower()
        elif k == "userknownhostsfile":
            value = value.replace("%%", "%")
        elif k == "stricthostkeychecking":
            value = _YES_NO.get(value, value)
        out[k] = value
    return out


def mismatches(block: HostBlock, host: str, effective: dict[str, list[str]]) -> list[Mismatch]:
    """Options of ``block`` that are not effective for ``host``.

    "Effective" means: the single-valued options equal sshkit's values, and sshkit's
    IdentityFile is the *first* one listed (ssh -G lists every IdentityFile that applies, since
    they accumulate; with ``IdentitiesOnly yes`` ssh offers them in that order, so the first one
    is the key used).
    """
    out: list[Mismatch] = []
    for key, want in expected_values(block, host).items():
        got = effective.get(key, [])
        actual = got[0] if got else ""
        if actual != want and not _same_after_expansion(key, want, actual):
            out.append(Mismatch(key, want, actual))
    return out


_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(value: str) -> int | None:
    """An OpenSSH time (10m, 1h30m, 600) in seconds; None if it is not one."""
    parts = re.findall(r"([0-9]+)([smhdw]?)", value.lower())
    if not parts or "".join(n + u for n, u in parts) != value.lower():
        return None
    return sum(int(n) * _TIME_UNITS[u] for n, u in parts)


def _same_after_expansion(key: str, want: str, actual: str) -> bool:
    """Whether `ssh -G` printed `want` in its expanded form (ControlPath's %C, times)."""
    if key == "controlpath" and want.endswith("/%C"):
        head, _, name = actual.rpartition("/")
        return head == want[: -len("/%C")].replace("%%", "%") and bool(
            re.fullmatch(r"[0-9a-f]{40}", name)
        )
    if key == "controlpersist":
        return want != "yes" and _seconds(want) is not None and str(_seconds(want)) == actual
    return False
