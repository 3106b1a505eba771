"""A lossless ssh_config editor: parse, edit sshkit's own blocks, render the same bytes.

Design (see docs/ssh-config.md and the spec's §6):

* Every line is kept as it was read: its text, its line ending (``\\n``, ``\\r\\n`` or none for a
  last line without newline) and every byte (undecodable bytes survive via surrogateescape).
  Rendering an unedited config gives back the input byte for byte.
* sshkit only ever touches *managed blocks*: a run of lines between a ``# BEGIN SSHKIT <alias>``
  and an ``# END SSHKIT <alias>`` line. A block records the options sshkit used
  (``# sshkit:key=value`` lines) and closes with a ``Host *`` line, so that whatever follows it
  is in global scope exactly as before.
* Managed blocks are placed at the very top of the file. OpenSSH takes the first value it finds
  for every option, so a block at the top beats top-level globals, ``Host *``/``Match all``
  blocks and ``Include``d files for the alias it names. Because the block's ``Host`` line
  matches only that alias and the block ends with ``Host *``, every other host goes through
  exactly the same lines as before (proved with ``ssh -G`` in tests/test_ssh_config_sshg.py).
* Inserting a block only adds whole lines and removing it only deletes them, so removing every
  block sshkit wrote restores the original bytes.
* A hand-written block for the same alias (``Host bai-vscode`` from the old guide) is disabled by
  prefixing each of its lines with a tag naming the alias; re-enabling strips the tag again.

This module is pure: bytes in, bytes out, no file access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sshkit.errors import SshConfigError

BOM = b"\xef\xbb\xbf"
BEGIN_PREFIX = "# BEGIN SSHKIT "
END_PREFIX = "# END SSHKIT "
META_PREFIX = "# sshkit:"
DISABLED_PREFIX = "#sshkit-disabled "  # followed by "<alias>: " then the original line
_DISABLED_RE = re.compile(r"^#sshkit-disabled (\S+): ")
BLOCK_KEYWORDS = frozenset({"host", "match"})
# Keywords whose argument is the rest of the line, verbatim (readconf.c).
WHOLE_LINE_KEYWORDS = frozenset(
    {"proxycommand", "localcommand", "remotecommand", "knownhostscommand"}
)
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.*?@:+-]+$")
_META_KEY_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Line:
    """One physical line: ``text`` without its line ending, and ``eol`` ('\\n', '\\r\\n' or '')."""

    text: str
    eol: str

    @property
    def stripped(self) -> str:
        return self.text.strip(" \t\r")

    def keyword(self) -> str | None:
        """The lowercased keyword, or None for a blank or comment line."""
        parsed = split_keyword(self.text)
        return parsed[0].lower() if parsed else None

    def args(self) -> list[str]:
        """The arguments as OpenSSH would split them (quotes removed)."""
        parsed = split_keyword(self.text)
        if parsed is None:
            return []
        keyword, rest = parsed
        if keyword.lower() in WHOLE_LINE_KEYWORDS:
            return [rest] if rest else []
        return argv_split(rest)


def split_keyword(text: str) -> tuple[str, str] | None:
    """Split a line into (keyword, rest) like OpenSSH; None for blank and comment lines.

    The separator is whitespace or optional whitespace, one '=' and optional whitespace.
    Trailing whitespace and a final CR are dropped from ``rest``.
    """
    s = text.rstrip(" \t\r\n")
    s = s.lstrip(" \t")
    if not s or s.startswith("#"):
        return None
    m = re.match(r"([^\s=]+)[ \t]*(?:=[ \t]*)?(.*)$", s, re.DOTALL)
    if m is None:  # a line starting with '=': OpenSSH rejects it, keep it opaque
        return None
    return m.group(1), m.group(2)


def argv_split(s: str) -> list[str]:
    """Split arguments like OpenSSH's ``argv_split`` (misc.c, 9.2).

    Double or single quotes group; backslash escapes only quotes, backslash and (outside quotes)
    space; any other backslash is kept. An unquoted '#' starting an argument ends the line.
    Raises SshConfigError on an unterminated quote ("invalid quotes" in OpenSSH).
    """
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            break
        if s[i] == "#":
            break
        arg: list[str] = []
        quote: str | None = None
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                if nxt in "'\"\\" or (quote is None and nxt == " "):
                    arg.append(nxt)
                    i += 2
                    continue
                arg.append(c)
                i += 1
                continue
            if quote is None and c in " \t":
                break
            if quote is None and c in "'\"":
                quote = c
                i += 1
                continue
            if quote is not None and c == quote:
                quote = None
                i += 1
                continue
            arg.append(c)
            i += 1
        if quote is not None:
            raise SshConfigError("invalid quotes in ssh_config line")
        out.append("".join(arg))
    return out


def quote_arg(value: str) -> str:
    """Quote one argument so that ``argv_split`` gives it back unchanged.

    Raises SshConfigError for values OpenSSH cannot represent (newline, a double quote
    together with a trailing backslash, and the like are refused rather than guessed).
    """
    if any(c in value for c in "\r\n\0"):
        raise SshConfigError("a value for ssh_config contains a line break")
    if value and not any(c in value for c in " \t\"'#\\"):
        return value
    if '"' in value:
        raise SshConfigError(f"cannot write a value containing a double quote: {value!r}")
    if value.endswith("\\"):
        raise SshConfigError(f"cannot write a value ending in a backslash: {value!r}")
    # Inside double quotes argv_split only unescapes a backslash before a quote or a backslash;
    # other backslashes (Windows paths) are kept literally, so only those few need doubling.
    out = []
    for i, c in enumerate(value):
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "\\'\"":
            out.append("\\\\")
        else:
            out.append(c)
    quoted = '"' + "".join(out) + '"'
    if argv_split(quoted) != [value]:  # defensive: never write something that reads back wrong
        raise SshConfigError(f"cannot quote value for ssh_config: {value!r}")
    return quoted


def escape_percent(value: str) -> str:
    """Escape '%' for keywords that expand %-tokens (IdentityFile, UserKnownHostsFile...)."""
    return value.replace("%", "%%")


def split_lines(text: str) -> list[Line]:
    """Split text into Lines keeping each line ending; ``join`` of them is the input."""
    lines: list[Line] = []
    for m in re.finditer(r"([^\n]*)(\n|$)", text):
        body, nl = m.group(1), m.group(2)
        if not body and not nl:
            continue
        if nl and body.endswith("\r"):
            lines.append(Line(body[:-1], "\r\n"))
        else:
            lines.append(Line(body, nl))
    return lines


@dataclass(frozen=True)
class ManagedBlock:
    """A block sshkit wrote: lines ``start`` .. ``end`` inclusive (the markers)."""

    alias: str
    start: int
    end: int
    meta: dict[str, str]


@dataclass(frozen=True)
class HandwrittenBlock:
    """A user's ``Host`` block naming exactly one alias: lines ``start`` .. ``end`` inclusive."""

    alias: str
    start: int
    end: int
    options: list[tuple[str, str]]


@dataclass(frozen=True)
class HostBlock:
    """What sshkit writes for one alias (or wildcard pattern).

    ``options`` are (Keyword, already-quoted value) pairs in order; ``meta`` is recorded as
    ``# sshkit:key=value`` lines so that `hosts list` and reruns know how it was made.
    """

    alias: str
    options: Sequence[tuple[str, str]]
    meta: Mapping[str, str] = field(default_factory=dict)
    comment: str = ""

    def validate(self) -> None:
        """Raise SshConfigError for an alias, keyword or value sshkit must not write."""
        if not _ALIAS_RE.match(self.alias) or self.alias.startswith(("!", "-")):
            raise SshConfigError(
                f"invalid host alias {self.alias!r}",
                hint="use letters, digits and . _ - (and * ? for a wildcard pattern)",
            )
        for key, value in self.options:
            if not _KEYWORD_RE.match(key):
                raise SshConfigError(f"invalid ssh_config keyword {key!r}")
            if any(c in value for c in "\r\n\0") or not value.strip():
                raise SshConfigError(f"invalid value for {key}")
        for key, value in self.meta.items():
            if not _META_KEY_RE.match(key) or any(c in value for c in "\r\n\0"):
                raise SshConfigError(f"invalid sshkit metadata {key!r}")

    def render_lines(self, eol: str) -> list[Line]:
        """The block's lines, markers included, each ending with ``eol``."""
        self.validate()
        texts = [
            f"{BEGIN_PREFIX}{self.alias} -- written by sshkit; "
            f"undo with: sshkit hosts remove {self.alias}"
        ]
        if self.comment:
            texts.extend(f"# {c}".rstrip() for c in self.comment.splitlines())
        texts.extend(f"{META_PREFIX}{k}={v}" for k, v in self.meta.items())
        texts.append(f"Host {self.alias}")
        texts.extend(f"    {k} {v}" for k, v in self.options)
        texts.append(
            "# The next line ends this block: the rest of the file applies to every host as before."
        )
        texts.append("Host *")
        texts.append(f"{END_PREFIX}{self.alias}")
        return [Line(t, eol) for t in texts]


_MARKER_RE = re.compile(r"^#[ \t]*(BEGIN|END)[ \t]+SSHKIT(?:[ \t]+(\S+))?", re.IGNORECASE)


def _marker(line: Line) -> tuple[str, str] | None:
    """('begin'|'end', alias) for a marker line, else None.

    Matching is lenient (any case, any spacing) so that a hand-mangled marker is seen and
    refused rather than silently taken for an ordinary comment.
    """
    m = _MARKER_RE.match(line.stripped)
    if m is None:
        return None
    return m.group(1).lower(), m.group(2) or ""


class SshConfig:
    """A parsed ssh_config that renders back to the exact input bytes.

    Editing methods return a new SshConfig and never change this one.
    """

    def __init__(self, lines: Iterable[Line]) -> None:
        self.lines: list[Line] = list(lines)

    @classmethod
    def parse(cls, data: bytes | None) -> SshConfig:
        """Parse file bytes (None or b'' for a missing or empty file).

        Raises SshConfigError for a UTF-8 BOM (fatal for OpenSSH) so sshkit never edits a file
        ssh cannot read.
        """
        if not data:
            return cls([])
        if data.startswith(BOM):
            raise SshConfigError(
                "the ssh config starts with a UTF-8 byte order mark, which OpenSSH rejects",
                hint="save the file as UTF-8 without BOM (ssh itself fails on it), then rerun",
            )
        return cls(split_lines(data.decode("utf-8", errors="surrogateescape")))

    def render(self) -> bytes:
        """The config's bytes."""
        return "".join(line.text + line.eol for line in self.lines).encode(
            "utf-8", errors="surrogateescape"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SshConfig) and self.lines == other.lines

    __hash__ = None  # type: ignore[assignment]

    # -- reading -------------------------------------------------------------------------------

    def eol(self) -> str:
        """The line ending new lines should use: CRLF when most lines use it."""
        crlf = sum(1 for line in self.lines if line.eol == "\r\n")
        lf = sum(1 for line in self.lines if line.eol == "\n")
        return "\r\n" if crlf > lf else "\n"

    def managed_blocks(self) -> list[ManagedBlock]:
        """Every sshkit block, in file order.

        Raises SshConfigError when the markers are nested, unbalanced, mismatched or duplicated:
        sshkit then refuses to edit rather than risk deleting the user's lines.
        """
        blocks: list[ManagedBlock] = []
        open_alias: str | None = None
        open_at = 0
        seen: set[str] = set()
        for i, line in enumerate(self.lines):
            mk = _marker(line)
            if mk is None:
                continue
            kind, alias = mk
            where = f"line {i + 1}"
            if not alias:
                raise SshConfigError(f"sshkit marker without a host name at {where}", hint=_FIX)
            if kind == "begin":
                if open_alias is not None:
                    raise SshConfigError(
                        f"nested sshkit block {alias!r} inside {open_alias!r} at {where}", hint=_FIX
                    )
                if alias in seen:
                    raise SshConfigError(f"duplicated sshkit block {alias!r} at {where}", hint=_FIX)
                open_alias, open_at = alias, i
            else:
                if open_alias is None:
                    raise SshConfigError(
                        f"sshkit end marker for {alias!r} without a begin at {where}", hint=_FIX
                    )
                if alias != open_alias:
                    raise SshConfigError(
                        f"sshkit end marker for {alias!r} closes {open_alias!r} at {where}",
                        hint=_FIX,
                    )
                seen.add(alias)
                blocks.append(ManagedBlock(alias, open_at, i, self._meta(open_at, i)))
                open_alias = None
        if open_alias is not None:
            raise SshConfigError(
                f"sshkit block {open_alias!r} has no end marker (line {open_at + 1})", hint=_FIX
            )
        return blocks

    def _meta(self, start: int, end: int) -> dict[str, str]:
        meta: dict[str, str] = {}
        for line in self.lines[start + 1 : end]:
            s = line.stripped
            if s.startswith(META_PREFIX) and "=" in s:
                key, _, value = s[len(META_PREFIX) :].partition("=")
                meta.setdefault(key.strip(), value.strip())
        return meta

    def block_options(self, block: ManagedBlock) -> list[tuple[str, str]]:
        """(keyword, raw value) pairs of the ``Host`` section inside a managed block."""
        out: list[tuple[str, str]] = []
        in_host = False
        for line in self.lines[block.start + 1 : block.end]:
            parsed = split_keyword(line.text)
            if parsed is None:
                continue
            key = parsed[0].lower()
            if key == "host":
                in_host = argv_split(parsed[1]) == [block.alias]
                continue
            if in_host:
                out.append((parsed[0], parsed[1]))
        return out

    def handwritten_blocks(self, alias: str) -> list[HandwrittenBlock]:
        """User ``Host`` blocks (outside sshkit's) whose only pattern is ``alias``.

        A block runs from its ``Host`` line to its last option line before the next
        ``Host``/``Match`` (trailing comments and blank lines are left to what follows).
        """
        managed = self._managed_lines()
        found: list[HandwrittenBlock] = []
        i = 0
        n = len(self.lines)
        while i < n:
            if i in managed:
                i += 1
                continue
            line = self.lines[i]
            parsed = split_keyword(line.text)
            if parsed and parsed[0].lower() == "host" and _safe_args(parsed[1]) == [alias]:
                last = i
                options: list[tuple[str, str]] = []
                j = i + 1
                while j < n and j not in managed:
                    p = split_keyword(self.lines[j].text)
                    if p is not None:
                        if p[0].lower() in BLOCK_KEYWORDS:
                            break
                        options.append((p[0], p[1]))
                        last = j
                    j += 1
                found.append(HandwrittenBlock(alias, i, last, options))
                i = j
                continue
            i += 1
        return found

    def host_lines_mentioning(self, alias: str) -> list[int]:
        """Indexes of user ``Host`` lines outside sshkit blocks that list ``alias`` among others."""
        managed = self._managed_lines()
        out = []
        for i, line in enumerate(self.lines):
            if i in managed:
                continue
            parsed = split_keyword(line.text)
            if parsed and parsed[0].lower() == "host":
                args = _safe_args(parsed[1])
                if alias in args and args != [alias]:
                    out.append(i)
        return out

    def disabled_aliases(self) -> set[str]:
        """Aliases that have hand-written lines disabled by sshkit."""
        out: set[str] = set()
        for line in self.lines:
            m = _DISABLED_RE.match(line.text)
            if m:
                out.add(m.group(1))
        return out

    def _managed_lines(self) -> set[int]:
        out: set[int] = set()
        for b in self.managed_blocks():
            out.update(range(b.start, b.end + 1))
        return out

    # -- editing -------------------------------------------------------------------------------

    def upsert(self, block: HostBlock) -> SshConfig:
        """Write ``block``, replacing an existing sshkit block for the same alias.

        New blocks go to the top of the file, after the other sshkit blocks already there; an
        existing block that sits at the top keeps its place, one that was moved lower is moved
        back to the top (where its options win). Upserting the same block twice gives the same
        bytes. Raises SshConfigError on broken markers or an invalid block.
        """
        blocks = self.managed_blocks()
        eol = self.eol()
        new_lines = block.render_lines(eol)
        top_end = _top_run_end(blocks)
        for b in blocks:
            if b.alias == block.alias:
                if b.start < top_end:  # already among the top blocks: replace in place
                    return SshConfig(self.lines[: b.start] + new_lines + self.lines[b.end + 1 :])
                rest = SshConfig(self.lines[: b.start] + self.lines[b.end + 1 :])
                return rest._insert_top(new_lines)
        return self._insert_top(new_lines)

    def _insert_top(self, new_lines: list[Line]) -> SshConfig:
        at = _top_run_end(self.managed_blocks())
        return SshConfig(self.lines[:at] + new_lines + self.lines[at:])

    def remove(self, alias: str) -> SshConfig:
        """Remove the sshkit block for ``alias`` and re-enable hand-written lines it disabled.

        Raises SshConfigError when there is no such block or the markers are broken.
        """
        blocks = self.managed_blocks()
        for b in blocks:
            if b.alias == alias:
                rest = SshConfig(self.lines[: b.start] + self.lines[b.end + 1 :])
                return rest.enable_handwritten(alias)
        raise SshConfigError(
            f"no sshkit block for {alias!r} in this config",
            hint="see `sshkit hosts list` for the names sshkit manages",
        )

    def disable_handwritten(self, alias: str) -> SshConfig:
        """Comment out the user's own ``Host ALIAS`` blocks, restorably.

        Each line gets the prefix ``#sshkit-disabled ALIAS: ``; ``enable_handwritten`` (and
        ``remove``) strip it, giving back the original bytes.
        """
        found = self.handwritten_blocks(alias)
        if not found:
            return self
        lines = list(self.lines)
        for hb in found:
            for i in range(hb.start, hb.end + 1):
                lines[i] = Line(f"{DISABLED_PREFIX}{alias}: {lines[i].text}", lines[i].eol)
        return SshConfig(lines)

    def enable_handwritten(self, alias: str) -> SshConfig:
        """Undo ``disable_handwritten`` for ``alias``."""
        prefix = f"{DISABLED_PREFIX}{alias}: "
        return SshConfig(
            Line(line.text[len(prefix) :], line.eol) if line.text.startswith(prefix) else line
            for line in self.lines
        )


_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+$")


# In session mode a session that ends mid-connection leaves a silent tunnel (the webserver
# swallows the close, spec §14): ssh's keepalive ends it after INTERVAL * (COUNT_MAX + 1)
# s of silence (OpenSSH gives up on the check after COUNT_MAX unanswered ones), here 40 s.
# ConnectTimeout bounds the banner exchange; it stays above the relay's own worst case
# (tunnel + waiting for a starting session + first-byte watchdog, 10 s each by default),
# so that the relay's explanation, not ssh's "timed out", is what the user sees.
CONNECT_TIMEOUT = 60
SERVER_ALIVE_INTERVAL = 10
SERVER_ALIVE_COUNT_MAX = 3


def sshkit_host_block(
    *,
    alias: str,
    hostname: str | None,
    user: str,
    identity_file: str,
    proxy_command: str,
    host_key: str = "pin",
    known_hosts_file: str | None = None,
    host_key_alias: str | None = None,
    connect_timeout: int = CONNECT_TIMEOUT,
    server_alive_interval: int = SERVER_ALIVE_INTERVAL,
    server_alive_count_max: int = SERVER_ALIVE_COUNT_MAX,
    meta: Mapping[str, str] | None = None,
) -> HostBlock:
    """The block sshkit writes for ``alias`` (a concrete alias or a ``*SUFFIX`` pattern).

    ``hostname`` None writes ``HostName %h`` (for wildcards: the typed name, which the relay
    parses), so that a top-level ``HostName`` in the user's file cannot redirect it.
    ``proxy_command`` is a complete ProxyCommand value (see sshkit.formats.proxycommand).
    ``host_key`` is ``pin`` (a managed known_hosts file, ``accept-new``, optional per-session
    ``HostKeyAlias``) or ``off`` (no checking, like the peers). Raises SshConfigError for
    values that cannot be written safely.
    """
    if hostname is not None and hostname != "%h" and not _NAME_RE.match(hostname):
        raise SshConfigError(f"invalid session name for HostName: {hostname!r}")
    if not _NAME_RE.match(user):
        raise SshConfigError(f"invalid user name {user!r}")
    for path in (identity_file, known_hosts_file or ""):
        if "${" in path:  # ssh expands ${VAR} in these paths and has no escape for it
            raise SshConfigError(f"cannot write a path containing '${{' to ssh_config: {path}")
    options: list[tuple[str, str]] = [("HostName", hostname if hostname is not None else "%h")]
    options += [
        ("User", user),
        ("IdentityFile", quote_arg(escape_percent(identity_file))),
        ("IdentitiesOnly", "yes"),
        ("ProxyCommand", proxy_command),
    ]
    if host_key == "pin":
        if not known_hosts_file:
            raise SshConfigError("host-key pinning needs a known_hosts file")
        if host_key_alias is not None:
            if not _NAME_RE.match(host_key_alias):
                raise SshConfigError(f"invalid HostKeyAlias {host_key_alias!r}")
            options.append(("HostKeyAlias", host_key_alias))
        options += [
            ("UserKnownHostsFile", quote_arg(escape_percent(known_hosts_file))),
            ("StrictHostKeyChecking", "accept-new"),
        ]
    elif host_key == "off":
        options += [("StrictHostKeyChecking", "no"), ("UserKnownHostsFile", "/dev/null")]
    else:
        raise SshConfigError(f"unknown host-key policy {host_key!r} (pin or off)")
    options += [
        ("ConnectTimeout", str(int(connect_timeout))),
        ("ServerAliveInterval", str(int(server_alive_interval))),
        ("ServerAliveCountMax", str(int(server_alive_count_max))),
    ]
    return HostBlock(alias=alias, options=options, meta=dict(meta or {}))


# ControlPersist takes `yes` (forever) or an OpenSSH time: 10m, 1h30m, 600.
_PERSIST_RE = re.compile(r"^(yes|(?:[0-9]+[sSmMhHdDwW]?)+)$")
# ssh first binds a temporary name, the ControlPath plus 17 characters, and %C
# expands to 40 hex digits; a name too long for a socket address makes ssh exit 255.
_CONTROL_NAME_EXTRA = 1 + 40 + 17 + 1  # "/", %C, "." with 16 random characters, the NUL


def multiplex_options(
    control_dir: str, persist: str, *, sun_path: int = 104
) -> list[tuple[str, str]]:
    """Options that share one connection between ssh commands: a master in `control_dir`.

    `ControlPath CONTROL_DIR/%C` (%C: a hash of the connection's names, so one socket
    per host); `ControlPersist PERSIST` keeps the master after its first ssh exits.
    `sun_path` is the size of a socket address's path (104 on macOS, 108 on Linux).
    Raises SshConfigError for a bad `persist` or a directory whose sockets would not fit.
    """
    if not _PERSIST_RE.match(persist):
        raise SshConfigError(
            f"invalid ControlPersist time {persist!r} (e.g. 10m, 1h, 600, or yes for ever)"
        )
    longest = sun_path - _CONTROL_NAME_EXTRA
    if len(control_dir.rstrip("/").encode()) > longest:
        raise SshConfigError(
            f"the directory {control_dir} is too long for ssh's control sockets "
            f"(at most {longest} bytes here)"
        )
    return [
        ("ControlMaster", "auto"),
        ("ControlPath", quote_arg(escape_percent(control_dir.rstrip("/")) + "/%C")),
        ("ControlPersist", persist),
    ]


_FIX = (
    "fix or delete the '# BEGIN SSHKIT'/'# END SSHKIT' lines by hand (each block needs one "
    "begin and one end with the same name, not nested); sshkit changed nothing"
)


def _top_run_end(blocks: list[ManagedBlock]) -> int:
    """Index just after the run of sshkit blocks that starts at line 0 (0 when none)."""
    at = 0
    for b in blocks:
        if b.start != at:
            break
        at = b.end + 1
    return at


def _safe_args(rest: str) -> list[str]:
    try:
        return argv_split(rest)
    except SshConfigError:
        return []
