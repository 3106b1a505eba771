"""Session set-ups for PuTTY, WinSCP and FileZilla: values in, file text out.

Pure: every function takes the template text and the values and returns the
file's text or bytes. The formats, as their programs read them:

* PuTTY reads saved sessions from ``HKEY_CURRENT_USER\\Software\\SimonTatham\\PuTTY\\
  Sessions\\<name>``, the name %-escaped (`putty_session_key`). sshkit writes a
  ``.reg`` file for regedit: "Windows Registry Editor Version 5.00", UTF-16LE
  with a BOM and CRLF lines, strings quoted with ``\\`` and ``"`` escaped,
  numbers as ``dword:%08x``.
* PuTTY and WinSCP expand their *local proxy command* (ProxyMethod 5) with
  PuTTY's formatter: ``%host``/``%port`` are tokens, ``%%`` is ``%`` and
  ``\\\\``, ``\\n``, ``\\t``, ``\\r``, ``\\x..`` are escapes. A Windows path such
  as ``C:\\tools\\sshkit.exe`` must therefore be written with doubled
  backslashes (`putty_command_escape`), or ``\\t`` becomes a tab.
* WinSCP keeps a site as ``[Sessions\\<name>]`` in WinSCP.ini; the name and
  string values are %-escaped like PuTTY's key names (non-ASCII text as UTF-8
  behind an escaped BOM, `winscp_munge`); the local proxy command is stored
  raw under ``ProxyTelnetCommand`` when ``ProxyMethod=5``.
* FileZilla keeps sites in ``sitemanager.xml``: ``<FileZilla3><Servers>
  <Server>`` with ``Host``, ``Port``, ``Protocol`` (1 = SFTP), ``Logontype``
  (5 = key file), ``Keyfile``, ``Name``. FileZilla has no proxy command, so the
  site points at ``sshkit forward``'s local port. `merge_filezilla_sites`
  adds or replaces one site and keeps everything else: other sites, folders,
  comments, attributes.
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as _xml_escape

from sshkit.errors import LocalFileError, UsageError

PUTTY_SESSIONS_KEY = "HKEY_CURRENT_USER\\Software\\SimonTatham\\PuTTY\\Sessions"
REG_HEADER = "Windows Registry Editor Version 5.00"

# PuTTY/WinSCP setting values (putty.h, WinSCP SessionData.h).
PROXY_METHOD_LOCAL_COMMAND = 5
# Stored ProxyDNS is (setting + 2) % 3 with {FORCE_ON, FORCE_OFF, AUTO} = {0, 1, 2}:
# 2 means "Yes": the name is resolved at the proxy end (the relay), never locally.
PROXY_DNS_AT_PROXY = 2
WINSCP_FS_SFTP_ONLY = 2
WINSCP_PING_NULL_PACKETS = 1
FILEZILLA_PROTOCOL_SFTP = 1
FILEZILLA_LOGON_KEYFILE = 5

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ProxySession:
    """A session reached through a local proxy command (PuTTY, WinSCP).

    `host` is what the proxy command receives as ``%host`` (the session name);
    `proxy_command` is the command line without the host, before PuTTY
    escaping (`proxy_command_line`); the host becomes its last argument.
    """

    name: str
    host: str
    user: str
    key_file: str
    proxy_command: str
    port: int = 22
    keepalive_seconds: int = 15


@dataclass(frozen=True)
class ForwardSite:
    """A FileZilla site that reaches a session through ``sshkit forward``."""

    name: str
    user: str
    key_file: str
    port: int
    host: str = "127.0.0.1"
    comment: str = ""


def _check_text(what: str, value: str) -> None:
    if _CONTROL.search(value):
        raise UsageError(f"the {what} contains a control character (such as a newline)")


def _check_brackets(what: str, name: str) -> None:
    # The name ends up inside a `[section]` line (regedit, WinSCP.ini), which
    # neither program escapes.
    if "[" in name or "]" in name:
        raise UsageError(
            f"the {what} name {name!r} contains a bracket", hint="choose another name with --alias"
        )


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"port {port} is out of range (1-65535)")


# --- commands -----------------------------------------------------------------


def windows_quote_arg(arg: str) -> str:
    """Quote one argument so CreateProcess/CommandLineToArgvW gives it back unchanged.

    Arguments without spaces, tabs or quotes are left alone; otherwise the
    argument is wrapped in double quotes, with backslashes doubled where they
    precede a quote (the MSVC runtime's rules).
    """
    if arg and not re.search(r'[ \t"]', arg):
        return arg
    out: list[str] = ['"']
    backslashes = 0
    for ch in arg:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def proxy_command_line(executable: str, args: list[str]) -> str:
    """The local proxy command for PuTTY/WinSCP without the host: ``"<exe>" <args...>``.

    Quoted for Windows, where PuTTY and WinSCP start it with CreateProcess (no
    shell; Unix PuTTY runs it with ``sh -c``, which reads a double-quoted path
    with spaces the same way). Not yet escaped for PuTTY's formatter
    (`putty_proxy_command`).
    """
    _check_text("sshkit executable path", executable)
    for arg in args:
        _check_text("proxy command argument", arg)
    for word in (executable, *args):
        # Unix PuTTY runs the command with `sh -c`, where `$` and backquotes expand even
        # inside the double quotes Windows needs; no quoting suits both, so refuse them.
        if "$" in word or "`" in word:
            raise UsageError(
                f"cannot put {word!r} in a PuTTY/WinSCP proxy command ('$' or '`' would be"
                " expanded by the shell)",
                hint="install sshkit under a path without '$' or '`' (or set SSHKIT_EXECUTABLE)",
            )
    return " ".join([windows_quote_arg(executable), *(windows_quote_arg(a) for a in args)])


def putty_command_escape(literal: str) -> str:
    """Escape literal text for PuTTY's proxy-command formatter (``\\`` and ``%`` doubled)."""
    return literal.replace("\\", "\\\\").replace("%", "%%")


def putty_command_unescape(formatted: str, *, host: str, port: int) -> str:
    """What PuTTY runs for `formatted` (its formatter, for tests and `doctor`-style checks).

    Implements the subset sshkit writes: ``\\\\``, ``\\%``, ``%%``, ``%host``,
    ``%port``; any other escape is kept as written, as PuTTY does.
    """
    out: list[str] = []
    i = 0
    while i < len(formatted):
        ch = formatted[i]
        nxt = formatted[i + 1 : i + 2]
        if ch == "\\" and nxt in ("\\", "%"):
            out.append(nxt)
            i += 2
        elif ch == "%" and nxt == "%":
            out.append("%")
            i += 2
        elif ch == "%" and formatted[i + 1 : i + 5].lower() == "host":
            out.append(host)
            i += 5
        elif ch == "%" and formatted[i + 1 : i + 5].lower() == "port":
            out.append(str(port))
            i += 5
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def putty_proxy_command(literal: str) -> str:
    """The stored form of a local proxy command: `literal` escaped, then PuTTY's ``%host``.

    `literal` is the command line without the host (`proxy_command_line`); the
    session's host name is appended by PuTTY/WinSCP as the last argument.
    """
    # "--": the host is the session name, never an option of `sshkit relay`.
    return putty_command_escape(literal) + " -- %host"


# --- PuTTY ----------------------------------------------------------------------


def putty_session_key(name: str) -> str:
    """The registry key name PuTTY uses for saved session `name`.

    PuTTY %-escapes space, ``\\ * ? %``, control characters, bytes above ``~``
    and a leading ``.``. Non-ASCII names are refused: PuTTY escapes their
    bytes in the Windows ANSI code page, which sshkit cannot know.
    """
    if not name:
        raise UsageError("the PuTTY session name is empty")
    if not name.isascii():
        raise UsageError(
            f"the PuTTY session name {name!r} is not ASCII",
            hint="choose an ASCII name with --alias",
        )
    _check_brackets("PuTTY session", name)
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch in " \\*?%" or ord(ch) < 0x20 or ord(ch) > 0x7E or (ch == "." and i == 0):
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def reg_string(value: str) -> str:
    """A REG_SZ value as a .reg file writes it: quoted, ``\\`` and ``"`` escaped."""
    _check_text("registry value", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reg_dword(value: int) -> str:
    """A REG_DWORD value as a .reg file writes it."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise UsageError(f"{value} does not fit a registry DWORD")
    return f"dword:{value:08x}"


def render_putty_reg(template: str, session: ProxySession) -> bytes:
    """The ``.reg`` file (UTF-16LE with BOM, CRLF) that saves `session` in PuTTY.

    Raises UsageError for values PuTTY or regedit cannot hold (control
    characters, a non-ASCII session name, an empty host, a bad port).
    """
    _check_port(session.port)
    if not session.host:
        raise UsageError("the PuTTY host name is empty")
    keepalive = max(0, session.keepalive_seconds)
    values = {
        "session_key": putty_session_key(session.name),
        "host_name": reg_string(session.host),
        "port_number": reg_dword(session.port),
        "protocol": reg_string("ssh"),
        "user_name": reg_string(session.user),
        "public_key_file": reg_string(session.key_file),
        "proxy_method": reg_dword(PROXY_METHOD_LOCAL_COMMAND),
        "proxy_command": reg_string(putty_proxy_command(session.proxy_command)),
        "proxy_dns": reg_dword(PROXY_DNS_AT_PROXY),
        "proxy_localhost": reg_dword(1),
        "ping_minutes": reg_dword(keepalive // 60),
        "ping_seconds": reg_dword(keepalive % 60),
        "tcp_keepalives": reg_dword(1),
    }
    text = string.Template(template).substitute(values)
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0] != REG_HEADER:
        raise UsageError("the PuTTY template does not start with the regedit 5 header")
    return "\ufeff".encode("utf-16-le") + "\r\n".join(lines).encode("utf-16-le")


# --- WinSCP -----------------------------------------------------------------------


def winscp_munge(value: str) -> str:
    """Escape `value` as WinSCP stores key names and string values in WinSCP.ini.

    Non-ASCII text is stored as UTF-8 behind a UTF-8 BOM (so WinSCP knows it
    is not ANSI); then PuTTY's escaping applies byte by byte.
    """
    raw = value.encode("utf-8")
    if len(raw) > len(value):
        raw = b"\xef\xbb\xbf" + raw
    out: list[str] = []
    for i, byte in enumerate(raw):
        if byte in b" \\*?%" or byte < 0x20 or byte > 0x7E or (byte == ord(".") and i == 0):
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def winscp_unmunge(value: str) -> str:
    """The inverse of `winscp_munge` (WinSCP's UnMungeStr), used to check exports."""
    raw = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "%" and re.fullmatch(r"[0-9A-Fa-f]{2}", value[i + 1 : i + 3]):
            raw.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(value[i].encode("latin-1"))
            i += 1
    if raw.startswith(b"\xef\xbb\xbf"):
        return bytes(raw[3:]).decode("utf-8")
    return bytes(raw).decode("latin-1")


def render_winscp_ini(template: str, session: ProxySession) -> str:
    """A WinSCP.ini fragment (one ``[Sessions\\...]`` section) for `session`.

    Raises UsageError for values WinSCP cannot hold.
    """
    _check_port(session.port)
    for what, value in (("site name", session.name), ("host", session.host)):
        if not value:
            raise UsageError(f"the WinSCP {what} is empty")
        _check_text(what, value)
    _check_brackets("WinSCP site", session.name)
    _check_text("user name", session.user)
    _check_text("key path", session.key_file)
    keepalive = max(0, session.keepalive_seconds)
    values = {
        "session_key": winscp_munge(session.name),
        "host_name": winscp_munge(session.host),
        "port_number": str(session.port),
        "user_name": winscp_munge(session.user),
        "public_key_file": winscp_munge(session.key_file),
        "fs_protocol": str(WINSCP_FS_SFTP_ONLY),
        "proxy_method": str(PROXY_METHOD_LOCAL_COMMAND),
        # Stored raw (WinSCP's StringRaw): only PuTTY's formatter escaping applies.
        "proxy_command": putty_proxy_command(session.proxy_command),
        "proxy_dns": str(PROXY_DNS_AT_PROXY),
        "proxy_localhost": "1",
        "ping_type": str(WINSCP_PING_NULL_PACKETS),
        "ping_minutes": str(keepalive // 60),
        "ping_seconds": str(keepalive % 60),
    }
    return string.Template(template).substitute(values)


def encode_winscp_ini(text: str, codepage: str) -> bytes:
    """WinSCP.ini bytes in the Windows ANSI code page `codepage` (`mbcs`, `cp1252`...).

    WinSCP reads WinSCP.ini as ANSI (a TMemIniFile without an encoding); munged
    values are ASCII, but ``ProxyTelnetCommand`` is stored raw, so a path such as
    ``C:\\Users\\Zoë\\...`` must be in the code page WinSCP will read it with.
    Raises UsageError for text the code page cannot hold (or an unknown code page).
    """
    try:
        return text.encode(codepage)
    except LookupError:
        raise UsageError(f"unknown code page {codepage!r}") from None
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise UsageError(
            f"the WinSCP site holds {bad!r}, which the {codepage} code page cannot store",
            hint="install sshkit and keep the key under a path of plain characters,"
            " or pass --codepage with Windows' ANSI code page",
        ) from None


# --- FileZilla ------------------------------------------------------------------


def xml_text(value: str) -> str:
    """`value` escaped for XML element text; refuses characters XML 1.0 cannot carry."""
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", value):
        raise UsageError("a FileZilla value contains a character XML cannot hold")
    return _xml_escape(value, {'"': "&quot;"})


def render_filezilla_server(template: str, site: ForwardSite) -> str:
    """One ``<Server>`` element (text) for `site`. Raises UsageError on bad values."""
    _check_port(site.port)
    if not site.name:
        raise UsageError("the FileZilla site name is empty")
    for what, value in (("site name", site.name), ("user name", site.user)):
        _check_text(what, value)
    _check_text("key path", site.key_file)
    values = {
        "host": xml_text(site.host),
        "port": str(site.port),
        "protocol": str(FILEZILLA_PROTOCOL_SFTP),
        "user": xml_text(site.user),
        "key_file": xml_text(site.key_file),
        "logon_type": str(FILEZILLA_LOGON_KEYFILE),
        "name": xml_text(site.name),
        "comments": xml_text(site.comment),
    }
    return string.Template(template).substitute(values)


@dataclass(frozen=True)
class MergeResult:
    """The merged sitemanager.xml and what happened to the named site."""

    data: bytes
    replaced: bool
    kept_sites: int


def _site_name(server: ET.Element) -> str:
    name = server.findtext("Name")
    if name is None:
        # FileZilla before <Name> kept the name as the element's own text.
        name = server.text or ""
    return name.strip()


def _parse(data: bytes, what: str) -> ET.Element:
    # The file is the user's own FileZilla configuration; expat never fetches
    # external entities and Python's expat (>= 2.4.1) limits entity expansion.
    parser = ET.XMLParser(  # noqa: S314
        target=ET.TreeBuilder(insert_comments=True, insert_pis=True)
    )
    try:
        parser.feed(data)
        root: ET.Element = parser.close()
    except ET.ParseError as exc:
        raise LocalFileError(f"{what} is not valid XML ({exc})") from None
    return root


def merge_filezilla_sites(existing: bytes | None, server_xml: str) -> MergeResult:
    """Add the ``<Server>`` in `server_xml` to a sitemanager.xml, or replace the one
    with the same name directly under ``<Servers>``.

    Everything outside the replaced site is kept byte for byte: other sites,
    ``<Folder>``s, comments and the DOCTYPE outside the root, character
    references such as ``&#13;``, CRLF line endings. `existing` None or empty
    starts a new file. Raises LocalFileError when `existing` is not a FileZilla
    sitemanager.xml.
    """
    new_server = _parse(server_xml.encode("utf-8"), "the FileZilla template")
    if new_server.tag != "Server":
        raise UsageError("the FileZilla template is not a <Server> element")
    name = _site_name(new_server)
    if existing is None or not existing.strip():
        return _new_sitemanager(new_server)

    root = _parse(existing, "the existing sitemanager.xml")
    if root.tag != "FileZilla3":
        raise LocalFileError(
            f"the existing file is not a FileZilla sitemanager.xml (root <{root.tag}>)"
        )
    kept = sum(1 for _ in root.iter("Server"))
    servers = root.find("Servers")
    names = [_site_name(c) for c in servers if c.tag == "Server"] if servers is not None else []
    spans = _spans(existing)
    eol = b"\r\n" if b"\r\n" in existing else b"\n"
    step = b"    "

    def text(indent: bytes) -> bytes:
        lines = server_xml.strip().replace("\r\n", "\n").split("\n")
        return (eol + indent).join(line.encode("utf-8") for line in lines)

    if spans.servers is not None and name in names:
        start, end = spans.children[names.index(name)]
        indent = _indent_before(existing, start)
        data = existing[:start] + text(indent) + existing[end:]
        return MergeResult(data=data, replaced=True, kept_sites=kept - 1)

    if spans.servers is not None:
        s_start, s_end, e_start = spans.servers
        outer = _indent_before(existing, s_start)
        if e_start is None:  # <Servers/>
            block = b"<Servers>" + eol + outer + step + text(outer + step) + eol + outer
            data = existing[:s_start] + block + b"</Servers>" + existing[s_end:]
        elif spans.children:
            last_end = spans.children[-1][1]
            indent = _indent_before(existing, spans.children[-1][0])
            data = existing[:last_end] + eol + indent + text(indent) + existing[last_end:]
        else:
            data = _insert_before_end(existing, e_start, outer + step, text, eol)
    else:
        r_start, _, r_end_tag = spans.root
        outer = _indent_before(existing, r_start) + step
        inner = b"<Servers>" + eol + outer + step + text(outer + step) + eol + outer + b"</Servers>"
        if r_end_tag is None:  # <FileZilla3/>
            raise LocalFileError("the existing sitemanager.xml has an empty <FileZilla3/> root")
        data = _insert_before_end(existing, r_end_tag, outer, lambda _i: inner, eol)
    return MergeResult(data=data, replaced=False, kept_sites=kept)


@dataclass
class _Spans:
    """Byte offsets in a sitemanager.xml: the root's and the first <Servers>'
    (start of start tag, end of the element, start of the end tag or None), and
    each direct <Server> child of that <Servers> as (start, end)."""

    root: tuple[int, int, int | None] = (0, 0, None)
    servers: tuple[int, int, int | None] | None = None
    children: list[tuple[int, int]] = field(default_factory=list)


def _spans(data: bytes) -> _Spans:
    from xml.parsers import expat

    parser = expat.ParserCreate()
    spans = _Spans()
    stack: list[tuple[str, int]] = []
    in_first_servers = False

    def end_of(tag_start: int) -> int:
        return data.index(b">", tag_start) + 1

    def start(name: str, attrs: object) -> None:
        nonlocal in_first_servers
        pos = parser.CurrentByteIndex
        stack.append((name, pos))
        if len(stack) == 2 and name == "Servers" and spans.servers is None:
            in_first_servers = True

    def end(name: str) -> None:
        nonlocal in_first_servers
        _, begin = stack.pop()
        pos = parser.CurrentByteIndex
        # expat reports an end tag at its "</", and an empty element's end just past "/>".
        self_closing = not data.startswith(b"</", pos)
        finish = pos if self_closing else end_of(pos)
        span = (begin, finish, None if self_closing else pos)
        if not stack:
            spans.root = span
        elif len(stack) == 1 and name == "Servers" and in_first_servers:
            spans.servers = span
            in_first_servers = False
        elif len(stack) == 2 and name == "Server" and in_first_servers:
            spans.children.append((begin, finish))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)
    return spans


def _indent_before(data: bytes, pos: int) -> bytes:
    """The whitespace between the line start and `pos` (empty when text precedes it)."""
    line_start = max(data.rfind(b"\n", 0, pos), data.rfind(b"\r", 0, pos)) + 1
    prefix = data[line_start:pos]
    return prefix if not prefix.strip() else b""


def _insert_before_end(
    data: bytes, end_tag: int, indent: bytes, text: Callable[[bytes], bytes], eol: bytes
) -> bytes:
    """Insert an element as the last child of the element whose end tag starts at `end_tag`."""
    closing = _indent_before(data, end_tag)
    line_start = end_tag - len(closing)
    if closing or (line_start > 0 and data[line_start - 1 : line_start] in (b"\n", b"\r")):
        return data[:line_start] + indent + text(indent) + eol + data[line_start:]
    return data[:end_tag] + eol + indent + text(indent) + eol + data[end_tag:]


def _new_sitemanager(new_server: ET.Element) -> MergeResult:
    root = ET.Element("FileZilla3")
    root.text = "\n    "
    servers = ET.SubElement(root, "Servers")
    servers.text = "\n"
    servers.tail = "\n"
    _append_indented(servers, new_server)
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    data = ('<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>\n' + body + "\n").encode(
        "utf-8"
    )
    return MergeResult(data=data, replaced=False, kept_sites=0)


def _last_line(text: str | None) -> str | None:
    if text is None or "\n" not in text:
        return None
    return text.split("\n")[-1]


def _append_indented(parent: ET.Element, child: ET.Element) -> None:
    """Append `child` to `parent`, indented like the file's existing children."""
    step = "    "
    siblings = list(parent)
    indent = _last_line(parent.text) if siblings else None
    if indent is None:
        indent = step * 2
    closing = _last_line(siblings[-1].tail) if siblings else None
    if closing is None:
        closing = step
    if siblings:
        siblings[-1].tail = "\n" + indent
    else:
        parent.text = "\n" + indent
    child.tail = "\n" + closing
    ET.indent(child, space=step, level=0)
    _shift(child, indent)
    parent.append(child)


def _shift(element: ET.Element, prefix: str) -> None:
    """Prefix every line break inside `element` (not its own tail) with `prefix`."""
    if element.text and "\n" in element.text:
        element.text = element.text.replace("\n", "\n" + prefix)
    for sub in element:
        _shift(sub, prefix)
        if sub.tail and "\n" in sub.tail:
            sub.tail = sub.tail.replace("\n", "\n" + prefix)


def filezilla_sites(data: bytes) -> list[dict[str, str]]:
    """Every ``<Server>`` in a sitemanager.xml as a dict of its child texts (for checks)."""
    root = _parse(data, "sitemanager.xml")
    return [
        {child.tag: (child.text or "") for child in server if isinstance(child.tag, str)}
        for server in root.iter("Server")
    ]
