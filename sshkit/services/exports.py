"""`sshkit export putty|winscp|filezilla`: client set-ups for a session.

PuTTY and WinSCP run ``"<sshkit>" relay %host`` as their local proxy command,
so they need nothing running beforehand. FileZilla cannot run a proxy
command: its site points at ``sshkit forward``'s local port instead. Every
set-up uses the session's key as a ``.ppk`` file (converted when needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sshkit.errors import LocalFileError, UsageError
from sshkit.formats import exports as fmt
from sshkit.formats.names import check_session_name
from sshkit.localfs import (
    atomic_write,
    backup_once,
    ensure_private_dir,
    expand_user,
    file_lock,
    home_dir,
    read_bytes_if_exists,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sshkit.api.client import BackendClient

Client = Literal["putty", "winscp", "filezilla"]

DEFAULT_USER = "work"
DEFAULT_FORWARD_PORT = 9922
KEEPALIVE_SECONDS = 15
STDOUT = Path("-")

_TEMPLATES: dict[Client, str] = {
    "putty": "putty-session.reg",
    "winscp": "winscp-session.ini",
    "filezilla": "filezilla-server.xml",
}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: `path` is None when the data went to stdout (`data`)."""

    client: Client
    alias: str
    path: Path | None
    data: bytes
    key_file: Path
    proxy_command: str | None
    replaced: bool = False
    kept_sites: int = 0
    backup: Path | None = None


def load_template(client: Client) -> str:
    """The template text for `client` (shipped in the package's templates/)."""
    ref = resources.files("sshkit").joinpath("templates", _TEMPLATES[client])
    return ref.read_text(encoding="utf-8")


def relay_command(launcher: list[str], profile: str | None) -> str:
    """The local proxy command without the host: ``"<sshkit>" relay [--profile P]``.

    `launcher` is the argv that runs sshkit (`sshkit.services.vscode.sshkit_launcher`,
    the same one ssh's ProxyCommand uses).
    """
    args = [*launcher[1:], "relay"]
    if profile:
        args += ["--profile", profile]
    return fmt.proxy_command_line(launcher[0], args)


def default_codepage() -> str:
    """The ANSI code page WinSCP reads WinSCP.ini in: Windows' own (`mbcs`) on
    Windows; elsewhere cp1252 (Western European Windows), overridable with --codepage."""
    return "mbcs" if os.name == "nt" else "cp1252"


def default_alias(session: str) -> str:
    return f"bai-{session}"


def default_output(client: Client, alias: str) -> Path:
    """Where an export goes without ``-o``: a file in the current directory for PuTTY
    and WinSCP; FileZilla's own sitemanager.xml, which the export merges into."""
    if client == "putty":
        return Path.cwd() / f"{alias}.reg"
    if client == "winscp":
        return Path.cwd() / f"{alias}.ini"
    return filezilla_sitemanager_path()


def filezilla_sitemanager_path(environ: Mapping[str, str] | None = None) -> Path:
    """FileZilla 3's sitemanager.xml for this user (it need not exist yet).

    Windows: %APPDATA%\\FileZilla. Elsewhere the folder FileZilla itself picks
    (`GetUnadjustedSettingsDir` in its fz_paths.cpp): the first *existing* folder of
    `$XDG_CONFIG_HOME/filezilla` (only an absolute XDG_CONFIG_HOME counts),
    `$HOME/.config/filezilla`, `$HOME/.filezilla`; when none exists, the first of
    the same list that can be named.
    """
    env = os.environ if environ is None else environ
    if os.name == "nt" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "FileZilla" / "sitemanager.xml"
    candidates = [
        f"{base.rstrip('/')}/{suffix}"
        for base, suffix in (
            (env.get("XDG_CONFIG_HOME", ""), "filezilla"),
            (env.get("HOME", ""), ".config/filezilla"),
            (env.get("HOME", ""), ".filezilla"),
        )
        if base.startswith("/")
    ]
    if not candidates:
        candidates = [str(home_dir(env) / ".config" / "filezilla")]
    folder = next((c for c in candidates if os.path.isdir(c)), candidates[0])
    return Path(folder) / "sitemanager.xml"


def _ppk_path_for(key: Path) -> Path:
    return key.with_suffix(".ppk") if key.suffix not in ("", ".ppk") else Path(f"{key}.ppk")


def _is_ppk(path: Path) -> bool:
    head = read_bytes_if_exists(path)
    return head is not None and head.startswith(b"PuTTY-User-Key-File-")


def ensure_ppk(
    session: str,
    key: Path | None,
    profile: str | None,
    backend: Callable[[], BackendClient],
) -> Path:
    """The `.ppk` file to reference, converting (or first fetching) the key when needed.

    `key` may be a `.ppk` (used as it is) or an OpenSSH/PEM key (converted next
    to it, again whenever the key is newer than the `.ppk`). With no `key`, the
    profile's container key is used, fetched from the session when missing
    (`backend()` gives the command's client, opened only then).
    Raises LocalFileError for a missing key, and the key and API errors of
    fetching and converting.
    """
    if key is not None:
        key = expand_user(key).absolute()
        if not key.is_file():
            raise LocalFileError(f"the key {key} does not exist")
        if _is_ppk(key):
            return key
    else:
        from sshkit.services.account import default_key_path, fetch_container_key
        from sshkit.settings import DEFAULT_PROFILE

        key = default_key_path(profile or DEFAULT_PROFILE).absolute()
        if not key.is_file():
            key = fetch_container_key(backend(), session).path.absolute()

    ppk = _ppk_path_for(key)
    if ppk.is_file() and ppk.stat().st_mtime >= key.stat().st_mtime and _is_ppk(ppk):
        return ppk
    from sshkit.services.keyconv import write_ppk

    # Replace only a .ppk sshkit could have made: never a symlink or someone else's file.
    replace = _is_ppk(ppk) and not ppk.is_symlink()
    return write_ppk(key, ppk, force=replace).absolute()


def export_session(
    client: Client,
    session: str,
    *,
    output: Path | None = None,
    alias: str | None = None,
    user: str = DEFAULT_USER,
    key: Path | None = None,
    profile: str | None = None,
    port: int = DEFAULT_FORWARD_PORT,
    force: bool = False,
    launcher: list[str] | None = None,
    codepage: str | None = None,
    backend: Callable[[], BackendClient],
) -> ExportResult:
    """Render (and unless `output` is ``-``, write) the set-up of `session` for `client`.

    PuTTY/WinSCP files are never overwritten without `force`; FileZilla's
    sitemanager.xml is merged into (a one-time backup first). WinSCP.ini is
    written in `codepage` (default `default_codepage()`). `backend()` gives the
    command's API client, asked for only when the key must be fetched. Raises
    UsageError for values the client cannot hold, LocalFileError for file
    problems, and the errors of `ensure_ppk`.
    """
    check_session_name(session)
    alias = alias or default_alias(session)
    if alias.startswith("-"):
        raise UsageError(f"the alias {alias!r} starts with '-'", hint="choose another --alias")
    target = output if output is not None else default_output(client, alias)
    to_stdout = target == STDOUT
    if not to_stdout and client != "filezilla" and target.exists() and not force:
        raise LocalFileError(f"{target} already exists", hint="pass --force to overwrite it")

    ppk = ensure_ppk(session, key, profile, backend)
    template = load_template(client)
    if client == "filezilla":
        return _export_filezilla(session, alias, user, ppk, port, target, template)

    if launcher is None:
        from sshkit.services.vscode import sshkit_launcher

        launcher = sshkit_launcher()
    command = relay_command(launcher, profile)
    proxied = fmt.ProxySession(
        name=alias,
        host=session,
        user=user,
        key_file=str(ppk),
        proxy_command=command,
        keepalive_seconds=KEEPALIVE_SECONDS,
    )
    if client == "putty":
        data = fmt.render_putty_reg(template, proxied)
    else:
        data = fmt.encode_winscp_ini(
            fmt.render_winscp_ini(template, proxied), codepage or default_codepage()
        )
    if not to_stdout:
        atomic_write(target, data)
    return ExportResult(
        client=client,
        alias=alias,
        path=None if to_stdout else target.absolute(),
        data=data,
        key_file=ppk,
        proxy_command=command,
    )


def _export_filezilla(
    session: str, alias: str, user: str, ppk: Path, port: int, target: Path, template: str
) -> ExportResult:
    site = fmt.ForwardSite(
        name=alias,
        user=user,
        key_file=str(ppk),
        port=port,
        comment=f"Start `sshkit forward {session} -b {port}` before connecting.",
    )
    server_xml = fmt.render_filezilla_server(template, site)
    to_stdout = target == STDOUT
    backup = None
    if to_stdout:
        merged = fmt.merge_filezilla_sites(None, server_xml)
    else:
        ensure_private_dir(target.parent)
        # Locked from read to replace: FileZilla's other sites must survive a parallel export.
        with file_lock(target):
            existing = read_bytes_if_exists(target)
            merged = fmt.merge_filezilla_sites(existing, server_xml)
            if existing is not None:
                backup = backup_once(target)
            atomic_write(target, merged.data)
    return ExportResult(
        client="filezilla",
        alias=alias,
        path=None if to_stdout else target.absolute(),
        data=merged.data,
        key_file=ppk,
        proxy_command=None,
        replaced=merged.replaced,
        kept_sites=merged.kept_sites,
        backup=backup,
    )
