"""The local-filesystem edge: atomic writes, one-time backups, private dirs.

Files the user owns (`~/.ssh/config`, keys) are written through here so that
they are never half-written, have their final mode from the first byte, and
are backed up once before sshkit first changes them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from sshkit.errors import LocalFileError

BACKUP_SUFFIX = ".sshkit-backup"
LOCK_SUFFIX = ".sshkit-lock"
LOCK_TIMEOUT = 30.0


def home_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The user's home directory: the one `~` and `~/.ssh` mean to the ssh client.

    Windows: `%USERPROFILE%` (else `%HOMEDRIVE%%HOMEPATH%`), and `HOME` is ignored.
    OpenSSH for Windows takes `~` from its `getpwuid`, which answers the profile
    directory registered for the user's SID (`ProfileImagePath`, what `USERPROFILE`
    holds); a `HOME` set by Git Bash, MSYS or Cygwin never moves it. Taking `HOME`
    first here would put the key under `$HOME\\.ssh` while ssh reads
    `%USERPROFILE%\\.ssh\\config`.
    POSIX: `$HOME`, else the password database, as Python's `expanduser` and
    the shells do. (OpenSSH expands `~` in IdentityFile and the like from the
    password database, but `Include` through glob(3), which reads `$HOME`; the
    two agree unless HOME was moved on purpose, and honouring `HOME` is what
    lets tests and sandboxes keep sshkit away from the real `~/.ssh`. sshkit
    writes absolute paths into ssh_config, so ssh's own `~` rule never applies
    to them.)
    `environ`/`platform` default to `os.environ`/`sys.platform`.
    Raises LocalFileError when no home directory can be determined.
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat == "win32":
        if env.get("USERPROFILE"):
            return Path(env["USERPROFILE"])
        if env.get("HOMEDRIVE") and env.get("HOMEPATH"):
            return Path(env["HOMEDRIVE"] + env["HOMEPATH"])
    elif env.get("HOME"):
        return Path(env["HOME"])
    else:
        try:
            import pwd

            return Path(pwd.getpwuid(os.getuid()).pw_dir)
        except (ImportError, KeyError):
            pass
    raise LocalFileError(
        "cannot determine the home directory (set USERPROFILE on Windows, HOME elsewhere)"
    )


def ssh_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The user's `~/.ssh` (see `home_dir` for which home). Raises LocalFileError."""
    return home_dir(environ, platform) / ".ssh"


def expand_user(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
) -> Path:
    """`path` with a leading `~` replaced by `home_dir()`, so it names what ssh would.

    `~user/...` is left to `os.path.expanduser` (the password database). Other
    paths are returned unchanged. Raises LocalFileError (see `home_dir`).
    """
    text = os.fspath(path)
    if not text.startswith("~"):
        return Path(text)
    plat = sys.platform if platform is None else platform
    seps = ("/", "\\") if plat == "win32" else ("/",)
    if text == "~" or text[1] in seps:
        rest = text[1:].lstrip("".join(seps))
        home = home_dir(environ, plat)
        return home / rest if rest else home
    return Path(os.path.expanduser(text))


def read_bytes_if_exists(path: Path) -> bytes | None:
    """Return the file's bytes, or None when it does not exist.

    Raises LocalFileError when it exists but cannot be read.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None


def ensure_private_dir(path: Path, mode: int = 0o700) -> bool:
    """Create `path` and each missing parent with `mode`; return True if `path` was created.

    Every directory created gets `mode` exactly (mkdir's own `parents=True` would
    give the parents the umask's mode, and `~/.ssh` must not end up 0755).
    Existing directories are left as they are (fixing modes is `fix-perms`' job).
    Raises LocalFileError when a directory cannot be created.
    """
    if path.is_dir():
        return False
    missing: list[Path] = []
    probe = path
    while not probe.is_dir() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for item in reversed(missing):
        try:
            item.mkdir(mode=mode)
        except FileExistsError:
            if not item.is_dir():
                raise LocalFileError(
                    f"cannot create directory {item}: a file is in the way"
                ) from None
            continue
        except OSError as exc:
            raise LocalFileError(f"cannot create directory {item}: {exc.strerror}") from None
        os.chmod(item, mode)  # mkdir's mode is filtered by the umask
    return True


def resolve_target(path: Path) -> Path:
    """Follow symlinks so that writing replaces the link's target, not the link."""
    try:
        return path.resolve(strict=False) if path.is_symlink() else path
    except OSError:
        return path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` atomically.

    The temporary file is created in the same directory with the final mode
    (`mode`, or the existing file's mode, or 0600), so a secret is never
    readable by others even for a moment. A symlinked `path` has its target
    replaced, keeping the link. Raises LocalFileError on failure; the original
    file is then unchanged.
    """
    target = resolve_target(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600
        except OSError as exc:
            raise LocalFileError(f"cannot stat {target}: {exc.strerror}") from None
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    except OSError as exc:
        raise LocalFileError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # the umask may have narrowed O_CREAT's mode
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LocalFileError(f"cannot write {target}: {exc.strerror}") from None


_KEY_STARTS = (
    b"-----BEGIN ",
    b"---- BEGIN SSH2",
    b"PuTTY-User-Key-File-",
    b"ssh-",
    b"ecdsa-",
    b"sk-",
)


def looks_like_key(data: bytes) -> bool:
    """True when `data` starts like a private or public key file sshkit could have written."""
    return data.lstrip().startswith(_KEY_STARTS)


def check_key_target(path: Path, *, force: bool = False) -> None:
    """Refuse to write a key to `path` when it is a symlink or an existing non-key file.

    A symlinked `~/.ssh/sshkit/default/id_container` pointing at `~/.bashrc` would
    otherwise have the link's target replaced by a private key. `force` allows both.
    Raises LocalFileError.
    """
    if force:
        return
    if path.is_symlink():
        raise LocalFileError(
            f"{path} is a symbolic link; sshkit does not write a key through it",
            hint="remove the link (or pass --force to replace its target)",
        )
    data = read_bytes_if_exists(path) if path.is_file() else None
    if data is not None and data.strip() and not looks_like_key(data):
        raise LocalFileError(
            f"{path} exists and is not a key; sshkit does not overwrite it",
            hint="choose another file (or pass --force to overwrite it)",
        )


def backup_once(path: Path, suffix: str = BACKUP_SUFFIX) -> Path | None:
    """Copy `path` to `path + suffix` unless that backup already exists.

    Returns the backup path when one was made, None otherwise (no file, or a
    backup is already there: the first backup is the one worth keeping).
    The backup keeps the original's mode. Raises LocalFileError on failure.
    """
    target = resolve_target(path)
    backup = target.with_name(target.name + suffix)
    if backup.exists():
        return None
    data = read_bytes_if_exists(target)
    if data is None:
        return None
    atomic_write(backup, data, mode=stat.S_IMODE(target.stat().st_mode))
    return backup


def lock_path(path: Path) -> Path:
    """The lock file guarding `path` (beside its target: `.NAME.sshkit-lock`)."""
    target = resolve_target(path)
    return target.with_name(f".{target.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive lock on `path` from read to replace (other sshkit runs wait).

    The lock is an OS lock (flock, or msvcrt on Windows) on a separate lock file that
    is never deleted (deleting it would let two runs lock two different files).
    Waits up to `timeout` seconds. Raises LocalFileError when the wait runs out or
    the lock file cannot be opened.
    """
    lock = lock_path(path)
    ensure_private_dir(lock.parent)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise LocalFileError(f"cannot open the lock file {lock}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LocalFileError(
                    f"{path} is locked by another sshkit command (waited {timeout:g} s)",
                    hint=f"wait for it to finish; if none runs, delete {lock}",
                )
            time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
