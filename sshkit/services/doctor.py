"""`sshkit doctor [ALIAS]`: check, one by one, everything a connection to ALIAS needs.

Each check returns ok / fail / skip with a one-line detail and, when it fails, a fix. Checks
that depend on a failed one are skipped so that the first failure names the cause.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sshkit.errors import NotFoundError, SshkitError, UsageError
from sshkit.formats.ssh_config import (
    WHOLE_LINE_KEYWORDS,
    HostBlock,
    ManagedBlock,
    SshConfig,
    argv_split,
    split_keyword,
)
from sshkit.services import sshcheck
from sshkit.services.sshconfig_edit import default_ssh_config, default_ssh_dir, read_config

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient
    from sshkit.settings import Connection

OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str | None = None


@dataclass
class DoctorReport:
    alias: str
    config: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]


@dataclass
class _Ctx:
    alias: str
    config: Path
    profile: str | None
    # The command's client, opened by the login check (the command closes it).
    backend: Callable[[], BackendClient]
    conn: Connection | None = None
    client: BackendClient | None = None
    cfg: SshConfig | None = None
    block: HostBlock | None = None
    session: str | None = None
    user: str | None = None
    identity: Path | None = None
    key_ok: bool = False
    session_ok: bool = False
    # ALIAS is the wildcard pattern itself (`*.bai`): no session to check.
    pattern: bool = False
    meta: dict[str, str] = field(default_factory=dict)


def _find_origin(cfg: SshConfig, key: str, actual: str, skip: set[int]) -> str | None:
    """Where in the file ``key`` gets the value ``actual``: 'line N (under `Host *`)'."""
    section = "the top level, before any Host"
    for i, line in enumerate(cfg.lines):
        parsed = split_keyword(line.text)
        if parsed is None or i in skip:
            if parsed and parsed[0].lower() in ("host", "match"):
                section = f"`{line.text.strip()}`"
            continue
        kw, rest = parsed[0].lower(), parsed[1]
        if kw in ("host", "match"):
            section = f"`{line.text.strip()}` (line {i + 1})"
            continue
        if kw != key:
            continue
        try:
            value = rest if kw in WHOLE_LINE_KEYWORDS else " ".join(argv_split(rest))
        except SshkitError:
            continue
        candidates = {value, value.lower(), {"no": "false", "yes": "true"}.get(value, value)}
        if actual in candidates or os.path.expanduser(value) == actual:
            return f"line {i + 1} of {{config}}, under {section}"
    return None


def _check_login(ctx: _Ctx) -> Check:
    client = ctx.backend()
    ctx.conn = client.conn
    return Check("login", OK, f"profile {ctx.conn.profile}, endpoint {ctx.conn.endpoint}")


def _check_endpoint(ctx: _Ctx) -> Check:
    client = ctx.backend()
    who = client.whoami()
    ctx.client = client
    return Check("endpoint", OK, f"reachable, credentials accepted ({who.access_key or 'session'})")


def _check_block(ctx: _Ctx) -> Check:
    _data, cfg = read_config(ctx.config)
    ctx.cfg = cfg
    blocks = cfg.managed_blocks()
    for block in blocks:
        if block.alias == ctx.alias:
            if block.meta.get("kind") == "wildcard":
                return _adopt_wildcard(ctx, cfg, block, None)
            _adopt_block(ctx, cfg, block)
            return Check(
                "ssh config",
                OK,
                f"sshkit block for {ctx.alias} in {ctx.config} (session {ctx.session})",
            )
    for block in blocks:
        suffix = _wildcard_suffix(block)
        if suffix and ctx.alias.endswith(suffix) and len(ctx.alias) > len(suffix):
            return _adopt_wildcard(ctx, cfg, block, ctx.alias[: -len(suffix)])
    raise _Fail(
        f"no sshkit block for {ctx.alias} in {ctx.config}",
        f"run: sshkit setup-vscode SESSION --alias {ctx.alias}",
    )


def _adopt_block(ctx: _Ctx, cfg: SshConfig, block: ManagedBlock) -> None:
    """Take the session, user and key that connections to ctx.alias use from `block`."""
    ctx.meta = dict(block.meta)
    ctx.block = HostBlock(block.alias, cfg.block_options(block))
    opts = {k.lower(): v for k, v in reversed(cfg.block_options(block))}
    ctx.session = ctx.meta.get("session") or opts.get("hostname")
    ctx.user = ctx.meta.get("user") or opts.get("user")
    ident = ctx.meta.get("identity") or " ".join(argv_split(opts.get("identityfile", "")))
    ctx.identity = Path(ident.replace("%%", "%")) if ident else None


def _wildcard_suffix(block: ManagedBlock) -> str | None:
    """The suffix of an sshkit `Host *SUFFIX` block, None for other blocks."""
    if block.meta.get("kind") != "wildcard":
        return None
    return block.meta.get("suffix") or (block.alias[1:] if block.alias.startswith("*") else None)


def _adopt_wildcard(ctx: _Ctx, cfg: SshConfig, block: ManagedBlock, session: str | None) -> Check:
    """Use the wildcard block for SESSION<SUFFIX>; `session` None: the pattern itself.

    The relay strips the suffix, so the session is the name without it. For the
    pattern there is no session to ask the server about (never `%h` or `*`).
    """
    _adopt_block(ctx, cfg, block)
    ctx.session = session
    if session is None:
        ctx.pattern = True
        suffix = _wildcard_suffix(block) or ""
        return Check(
            "ssh config",
            OK,
            f"sshkit wildcard block {block.alias} in {ctx.config}; the session and the "
            f"handshake need a concrete name: sshkit doctor NAME{suffix}",
        )
    return Check(
        "ssh config",
        OK,
        f"sshkit wildcard block {block.alias} in {ctx.config} covers {ctx.alias} "
        f"(session {session})",
    )


class _Fail(Exception):
    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


def _check_key_file(ctx: _Ctx) -> Check:
    path = ctx.identity
    if path is None or not path.is_file():
        raise _Fail(f"the key {path} does not exist", f"run: sshkit fetch-key {ctx.session}")
    if os.name != "nt":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise _Fail(
                f"the key {path} has mode {mode:04o}: ssh ignores a private key others can read "
                "(UNPROTECTED PRIVATE KEY FILE)",
                f"run: chmod 600 {path}   (or: sshkit fix-perms)",
            )
        return Check("key file", OK, f"{path} exists, mode {mode:04o}")
    return Check("key file", OK, f"{path} exists")


def _check_key_match(ctx: _Ctx) -> Check:
    from sshkit.formats.keys import parse_public_line, probe_key_file

    assert ctx.identity is not None
    assert ctx.client is not None
    info = probe_key_file(ctx.identity.read_bytes())
    if info.public is None:
        return Check("key matches server", SKIP, "the key's public half is encrypted")
    server = ctx.client.get_ssh_keypair().ssh_public_key
    if server is None:
        return Check("key matches server", SKIP, "the server has no SSH keypair for this user")
    server_fp = parse_public_line(server.strip()).fingerprint
    if server_fp != info.public.fingerprint:
        raise _Fail(
            f"the key {ctx.identity} ({info.public.fingerprint}) is not the server's SSH keypair "
            f"({server_fp}); the session will refuse it",
            f"download it again: sshkit setup-vscode {ctx.session} --yes "
            "(or sshkit fetch-key; with a .ssh folder, check its authorized_keys)",
        )
    ctx.key_ok = True
    return Check("key matches server", OK, f"{info.public.fingerprint} is the server's keypair")


def _check_permissions(ctx: _Ctx) -> Check:
    from sshkit.services.perms import check_permissions

    paths = [p for p in (default_ssh_dir(), ctx.config) if p.exists()]
    issues = check_permissions(paths) if paths else []
    if issues:
        raise _Fail(
            "; ".join(i.describe() for i in issues),
            "run: sshkit fix-perms (OpenSSH refuses group/world-writable configs)",
        )
    control = _control_dir(ctx)
    if control is not None:
        _check_control_dir(control)
        return Check(
            "permissions",
            OK,
            f"~/.ssh and the config are as OpenSSH demands; {control} is private (0700)",
        )
    return Check("permissions", OK, "~/.ssh and the config are as OpenSSH demands")


def _control_dir(ctx: _Ctx) -> Path | None:
    """The directory of the block's control sockets when it is multiplexed, else None."""
    if ctx.block is None or os.name == "nt":
        return None
    opts = {k.lower(): v for k, v in reversed(list(ctx.block.options))}
    if opts.get("controlmaster", "no").lower() in ("no", "false") or "controlpath" not in opts:
        return None
    try:
        words = argv_split(opts["controlpath"])
    except SshkitError:
        return None
    if not words or words[0].lower() == "none":
        return None
    path = os.path.expanduser(words[0].replace("%%", "%"))
    return Path(path).parent


def _check_control_dir(directory: Path) -> None:
    """Fail unless `directory` exists with mode 0700: whoever can write there can put
    a socket in place of the master's."""
    fix = f"run: mkdir -p -m 700 {directory} && chmod 700 {directory}   (or rerun setup-vscode)"
    try:
        st = directory.lstat()
    except OSError:
        raise _Fail(f"the control socket directory {directory} does not exist", fix) from None
    if not stat.S_ISDIR(st.st_mode):
        raise _Fail(f"{directory} is not a directory", f"remove it, then {fix}")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        raise _Fail(f"the control socket directory {directory} has mode {mode:04o}", fix)


def _check_effective(ctx: _Ctx) -> Check:
    assert ctx.block is not None and ctx.cfg is not None
    if sshcheck.find_ssh() is None:
        return Check("ssh -G", SKIP, "ssh is not installed")
    try:
        effective = sshcheck.ssh_g(ctx.config, ctx.alias)
    except SshkitError as exc:
        raise _Fail(exc.message, "fix the line ssh names (sshkit did not write it)") from None
    wanted = {"proxycommand", "user", "identityfile", "hostname", "identitiesonly"}
    bad = [m for m in sshcheck.mismatches(ctx.block, ctx.alias, effective) if m.key in wanted]
    if not bad:
        return Check("ssh -G", OK, "ProxyCommand, User and IdentityFile are sshkit's")
    managed: set[int] = set()
    for b in ctx.cfg.managed_blocks():
        managed.update(range(b.start, b.end + 1))
    parts = []
    for m in bad:
        origin = _find_origin(ctx.cfg, m.key, m.actual, managed)
        where = (
            origin.replace("{config}", str(ctx.config))
            if origin
            else "an Include'd file or /etc/ssh/ssh_config"
        )
        parts.append(f"{m.key} is {m.actual!r}, not sshkit's {m.expected!r} (set at {where})")
    raise _Fail(
        "; ".join(parts),
        f"OpenSSH uses the first value it finds: rerun sshkit setup-vscode {ctx.session} "
        "(it puts its block back at the top), or move that line below sshkit's block",
    )


def _check_session(ctx: _Ctx) -> Check:
    assert ctx.session is not None and ctx.client is not None
    from sshkit.services.session_state import not_running_error, session_state

    try:
        # Not get_session alone: 26.1.0-26.3.3 answer it with 500 for running sessions.
        state = session_state(ctx.client, ctx.session)
    except NotFoundError as exc:
        if exc.error_type and exc.error_type.endswith("too-many-sessions-matched"):
            raise _Fail(exc.message, exc.hint or "name the session by its id") from None
        raise _Fail(
            f"session {ctx.session} does not exist (terminated?)",
            f"start a session and run: sshkit setup-vscode NEW-SESSION "
            f"(or connect to any session as NAME{ctx.meta.get('suffix', '.bai')}); "
            f"sshkit hosts prune removes stale blocks",
        ) from None
    status = state.status
    if status is not None and not state.running:
        error = not_running_error(ctx.session, status)
        raise _Fail(error.message, error.hint or "start the session again")
    apps = {a.name for a in ctx.client.session_apps(ctx.session)}
    if "sshd" not in apps:
        raise _Fail(
            f"session {ctx.session} has no sshd service (apps: {', '.join(sorted(apps)) or '-'})",
            "use an image that has the sshd service app",
        )
    ctx.session_ok = True
    return Check("session", OK, f"{ctx.session} is {status or 'there'} and has sshd")


def _check_handshake(ctx: _Ctx) -> Check:
    import paramiko

    from sshkit.formats.proxycommand import paramiko_command
    from sshkit.services.vscode import relay_argv, sshkit_launcher

    assert ctx.session and ctx.identity and ctx.user
    argv = relay_argv(sshkit_launcher(), profile=ctx.meta.get("profile") or ctx.profile)
    proxy = paramiko.ProxyCommand(paramiko_command(argv, {"h": ctx.session}))
    client = paramiko.SSHClient()

    class _CheckAfterwards(paramiko.MissingHostKeyPolicy):
        """Accept for now, without saving: the key is compared with the pin below."""

        def missing_host_key(self, client: object, hostname: str, key: object) -> None:
            return None

    client.set_missing_host_key_policy(_CheckAfterwards())
    try:
        client.connect(
            ctx.session,
            username=ctx.user,
            key_filename=str(ctx.identity),
            sock=proxy,
            look_for_keys=False,
            allow_agent=False,
            timeout=60,
            banner_timeout=60,
            auth_timeout=60,
        )
        transport = client.get_transport()
        assert transport is not None
        hostkey = transport.get_remote_server_key()
        _check_pinned_host_key(ctx, hostkey)
        _in, out, _err = client.exec_command("echo sshkit-doctor", timeout=60)
        answer = out.read().decode(errors="replace").strip()
        if answer != "sshkit-doctor":
            raise _Fail("logged in, but a command gave no answer", "check the session's shell")
        return Check(
            "ssh handshake",
            OK,
            f"logged in as {ctx.user} through the relay (host key {hostkey.get_name()})",
        )
    except paramiko.AuthenticationException:
        raise _Fail(
            f"the session refused the key {ctx.identity} for user {ctx.user}",
            "check --user and that the key is the session's (see 'key matches server')",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _Fail(
            f"no SSH connection through the relay ({_failed_stage(client)}): {exc}",
            f"try: sshkit relay {ctx.session} --log-file relay.log < /dev/null",
        ) from None
    finally:
        client.close()
        proxy.close()


def _failed_stage(client: Any) -> str:
    """How far a failed paramiko connection got: banner, key exchange or authentication."""
    transport = client.get_transport()
    if transport is None or not getattr(transport, "remote_version", None):
        return "banner: no SSH banner came back through the relay"
    if getattr(transport, "session_id", None) is None:
        return "key exchange: sshd answered, the key exchange did not complete"
    return "authentication"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _check_ssh_login(ctx: _Ctx) -> Check:
    """The verdict: `ssh -F CFG -o BatchMode=yes ALIAS true`, the ssh users (and VS Code) run.

    paramiko only explains a failure: it retraces banner, key exchange and authentication
    through the same relay and names the stage that breaks.
    """
    import subprocess

    exe = sshcheck.find_ssh()
    if exe is None:
        return _check_handshake(ctx)
    argv = [exe, "-F", str(ctx.config), "-o", "BatchMode=yes", "--", ctx.alias, "true"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=180, check=False
        )
    except subprocess.TimeoutExpired:
        code, said = None, "no answer within 180 s"
    else:
        code = proc.returncode
        lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        said = _printable(lines[-1].strip()) if lines else f"exit status {code}"
    shown = f"ssh -F {ctx.config} -o BatchMode=yes {ctx.alias} true"
    if code == 0:
        return Check("ssh handshake", OK, f"`{shown}` logged in as {ctx.user} through the relay")
    try:
        _check_handshake(ctx)
    except _Fail as why:
        raise _Fail(f"{why.detail} (`{shown}` failed: {said})", why.hint) from None
    raise _Fail(
        f"`{shown}` failed ({said}), though sshkit's own SSH client got through banner, key "
        "exchange and authentication with the same key and relay",
        f"look at ssh's own options for {ctx.alias}: ssh -v -F {ctx.config} {ctx.alias} true",
    )


def _check_pinned_host_key(ctx: _Ctx, hostkey: Any) -> None:
    """Compare the server's key with the one ssh pinned (HostKeyAlias in sshkit's known_hosts)."""
    import paramiko

    assert ctx.block is not None
    opts = {k.lower(): v for k, v in reversed(list(ctx.block.options))}
    alias = opts.get("hostkeyalias")
    known = opts.get("userknownhostsfile")
    if not alias or not known or known == "/dev/null":
        return
    path = Path(" ".join(argv_split(known)).replace("%%", "%"))
    if not path.is_file():
        return
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except (OSError, paramiko.SSHException):
        return
    pinned = keys.lookup(alias)
    if pinned is None or hostkey.get_name() not in pinned:
        return
    if pinned[hostkey.get_name()] != hostkey:
        raise _Fail(
            f"the session's host key differs from the one pinned for {alias} in {path}",
            f"if the session was restarted, rerun sshkit setup-vscode {ctx.session}; "
            f"otherwise someone may be intercepting the connection",
        )


def _session_prereq(ctx: _Ctx) -> str | None:
    if ctx.pattern:
        return "a wildcard pattern names no session; run doctor on NAME" + (
            ctx.alias[1:] if ctx.alias.startswith("*") else ""
        )
    return None if ctx.client and ctx.session else "needs login+block"


_CHECKS: list[tuple[str, Callable[[_Ctx], Check], Callable[[_Ctx], str | None]]] = [
    ("login", _check_login, lambda c: None),
    ("endpoint", _check_endpoint, lambda c: None if c.conn else "needs a login"),
    ("ssh config", _check_block, lambda c: None),
    ("key file", _check_key_file, lambda c: None if c.block else "no sshkit block"),
    (
        "key matches server",
        _check_key_match,
        lambda c: None if c.client and c.identity and c.identity.is_file() else "needs key+login",
    ),
    ("permissions", _check_permissions, lambda c: None),
    ("ssh -G", _check_effective, lambda c: None if c.block else "no sshkit block"),
    ("session", _check_session, _session_prereq),
    (
        "ssh handshake",
        _check_ssh_login,
        lambda c: (
            None
            if c.session_ok and c.identity and c.identity.is_file()
            else "needs a concrete session name"
            if c.pattern
            else "needs the session and the key"
        ),
    ),
]


def run_doctor(
    alias: str = "bai-vscode",
    *,
    config: Path | None = None,
    profile: str | None = None,
    backend: Callable[[], BackendClient],
) -> DoctorReport:
    """Run every check; never raises for a failed check (it is reported instead).

    `backend()` gives the command's client for `profile` (the login check reports
    what it raises). Raises UsageError for an alias starting with '-' (ssh would read
    it as an option).
    """
    if alias.startswith("-"):
        raise UsageError(f"the alias {alias!r} starts with '-'")
    ctx = _Ctx(alias=alias, config=config or default_ssh_config(), profile=profile, backend=backend)
    report = DoctorReport(alias, ctx.config)
    for name, func, prereq in _CHECKS:
        missing = prereq(ctx)
        if missing:
            report.checks.append(Check(name, SKIP, f"skipped ({missing})"))
            continue
        try:
            report.checks.append(func(ctx))
        except _Fail as exc:
            report.checks.append(Check(name, FAIL, exc.detail, exc.hint))
        except SshkitError as exc:
            report.checks.append(Check(name, FAIL, exc.message, exc.hint))
    return report
