"""Planning and writing edits of an ssh_config file (shared by setup-vscode and hosts).

A plan holds the bytes before and after, so that ``--dry-run`` can show a diff, the CLI can ask
before writing, and the write can refuse when the file changed in between. The candidate is
checked with ``ssh -G`` *before* it replaces the file: a config ssh rejects is never installed.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sshkit import localfs
from sshkit.errors import LocalFileError, SshConfigError
from sshkit.formats.ssh_config import HandwrittenBlock, HostBlock, SshConfig
from sshkit.services import sshcheck


def default_ssh_dir() -> Path:
    """``~/.ssh`` of the current user (``localfs.ssh_dir``). Raises LocalFileError."""
    return localfs.ssh_dir()


def default_ssh_config() -> Path:
    return default_ssh_dir() / "config"


@dataclass
class ConfigPlan:
    """An edit of one ssh_config: ``before`` (None when missing) and ``after``."""

    path: Path
    before: bytes | None
    after: bytes
    disabled: list[HandwrittenBlock] = field(default_factory=list)
    blocks: list[HostBlock] = field(default_factory=list)
    # The same edit applied to other bytes: when another sshkit run changed the file
    # between planning and writing, the edit is redone on top of its result.
    redo: Callable[[bytes | None], bytes] | None = field(default=None, repr=False)

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the change ('' when nothing changes)."""
        if not self.changed:
            return ""
        old = (self.before or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        new = self.after.decode("utf-8", errors="replace").splitlines(keepends=True)
        lines = difflib.unified_diff(
            old,
            new,
            fromfile=str(self.path) if self.before is not None else "/dev/null",
            tofile=str(self.path),
        )
        return "".join(
            ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines
        )


def read_config(path: Path) -> tuple[bytes | None, SshConfig]:
    """The file's bytes (None when missing) and its parse. Raises SshConfigError/LocalFileError."""
    if path.is_dir():
        raise LocalFileError(f"{path} is a directory, not an ssh config file")
    data = localfs.read_bytes_if_exists(path)
    return data, SshConfig.parse(data)


def plan_upsert(path: Path, blocks: list[HostBlock], *, disable_aliases: list[str]) -> ConfigPlan:
    """Plan writing ``blocks`` (each replacing sshkit's earlier block for the same alias).

    Hand-written blocks naming exactly one of ``disable_aliases`` are disabled restorably.
    Raises SshConfigError on broken markers, so nothing is planned (or written).
    """
    before, _ = read_config(path)
    disabled: list[HandwrittenBlock] = []

    def edit(data: bytes | None) -> bytes:
        disabled.clear()
        original = cfg = SshConfig.parse(data)
        for block in blocks:
            cfg = cfg.upsert(block)
        for alias in disable_aliases:
            if cfg.handwritten_blocks(alias):
                # Reported with the user's own line numbers, not those after sshkit's insertion.
                disabled.extend(original.handwritten_blocks(alias))
                cfg = cfg.disable_handwritten(alias)
        return cfg.render()

    after = edit(before)
    return ConfigPlan(path, before, after, disabled, list(blocks), redo=edit)


# Options that only Apple's build of OpenSSH knows: every other ssh rejects the whole file
# unless an earlier `IgnoreUnknown` names them.
_APPLE_ONLY = {"usekeychain": "UseKeychain"}
_COMPLAINT_RE = re.compile(r"^(?P<file>.*?):? line (?P<line>\d+): (?P<what>.*)$")


def refuse_rejected_config(path: Path, ssh: str | None = None) -> None:
    """Raise SshConfigError when ssh already rejects ``path`` as it is, before any change.

    sshkit cannot prove its blocks with ``ssh -G`` in a file ssh refuses, so it writes
    nothing. The message quotes the user's own file and line; for a macOS-only option the
    hint says how to make the file portable. Does nothing for a missing file or without ssh.
    """
    if not localfs.resolve_target(path).is_file():
        return
    complaints = sshcheck.config_complaints(path, ssh=ssh)
    if complaints is None:
        return
    first = complaints[0]
    where, option = str(path), ""
    match = _COMPLAINT_RE.match(first)
    if match:
        file, number, what = match["file"], int(match["line"]), match["what"]
        where = f"{file}, line {number}"
        try:
            text = Path(file).read_bytes().splitlines()[number - 1]
            where += f": {text.decode(errors='replace').strip()!r}"
        except (OSError, IndexError):
            pass
        where += f" ({what.strip()})"
        option = what.rpartition("Bad configuration option:")[2].strip().lower()
    hint = (
        "fix that line, or put `IgnoreUnknown OPTION` first in the file for an option "
        "this OpenSSH does not know; then run the command again"
    )
    if option in _APPLE_ONLY:
        name = _APPLE_ONLY[option]
        hint = (
            f"{name} is known to macOS's ssh only: put `IgnoreUnknown {name}` first in "
            f"the file (before any Host or Match line) to make it portable, then run again"
        )
    raise SshConfigError(
        f"ssh already rejects {path}, so sshkit changes nothing: {where}", hint=hint
    )


def plan_remove(path: Path, aliases: list[str]) -> ConfigPlan:
    """Plan removing sshkit's blocks for ``aliases`` (re-enabling what they disabled)."""
    before, _ = read_config(path)

    def edit(data: bytes | None) -> bytes:
        cfg = SshConfig.parse(data)
        for alias in aliases:
            cfg = cfg.remove(alias)
        return cfg.render()

    return ConfigPlan(path, before, edit(before), redo=edit)


def verify_candidate(plan: ConfigPlan, ssh: str | None = None) -> None:
    """Check with ``ssh -G`` that ssh accepts the new text before it replaces the file.

    The candidate is written next to the target (so relative paths and permissions behave the
    same) and removed afterwards. Does nothing when ssh is not installed. Raises SshConfigError
    when ssh rejects the candidate but accepted the original.
    """
    exe = ssh or sshcheck.find_ssh()
    if exe is None or not plan.blocks:
        return
    target = localfs.resolve_target(plan.path)
    directory = target.parent if target.parent.is_dir() else Path(tempfile.gettempdir())
    fd, tmp_name = tempfile.mkstemp(prefix=".sshkit-check-", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(plan.after)
        try:
            sshcheck.ssh_g(tmp, plan.blocks[0].alias.replace("*", "x"), ssh=exe)
        except SshConfigError as new_err:
            if plan.before is not None:
                try:
                    sshcheck.ssh_g(plan.path, "sshkit-check", ssh=exe)
                except SshConfigError:
                    return  # ssh already rejects the current file: not sshkit's doing
            raise SshConfigError(
                f"refusing to write {plan.path}: {new_err.message}",
                hint="nothing was changed; please report this as an sshkit bug",
            ) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_plan(plan: ConfigPlan, *, create_dir_mode: int = 0o700) -> Path | None:
    """Write the plan atomically; return the one-time backup path (None when none was made).

    Keeps the file's mode (new files get 0600) and creates a missing parent directory 0700.
    The file is locked from the read to the replace (`localfs.file_lock`): a concurrent
    sshkit run waits. When the file changed since the plan was made, the plan's edit is
    redone on the new bytes (and checked with ``ssh -G`` again); a plan that cannot be
    redone is refused. Raises LocalFileError (also when the lock wait runs out) and
    SshConfigError.
    """
    if not plan.changed:
        return None
    target = localfs.resolve_target(plan.path)
    localfs.ensure_private_dir(target.parent, create_dir_mode)
    with localfs.file_lock(target):
        now = localfs.read_bytes_if_exists(target)
        if now != plan.before:
            if plan.redo is None:
                raise SshConfigError(
                    f"{plan.path} changed while sshkit was editing it",
                    hint="run the command again",
                )
            plan.before, plan.after = now, plan.redo(now)
            if not plan.changed:
                return None
            verify_candidate(plan)
        backup = localfs.backup_once(target)
        mode = None
        if plan.before is not None:
            mode = stat.S_IMODE(target.stat().st_mode)
        localfs.atomic_write(target, plan.after, mode=mode)
    return backup
