"""PuTTY .reg, WinSCP.ini and FileZilla sitemanager.xml exports, parsed back with real parsers.

The .reg parser below is written for these tests from the regedit 5 format (UTF-16LE with
BOM, CRLF, `[key]` lines, `"name"="string"` with `\\` and `\"` escapes, `"name"=dword:...`);
WinSCP.ini is read with configparser; sitemanager.xml with the stdlib XML parser.
"""

from __future__ import annotations

import configparser
import re
import xml.etree.ElementTree as ET

import pytest

from sshkit.errors import LocalFileError, UsageError
from sshkit.formats import exports as fmt
from sshkit.services.exports import load_template, relay_command

REG_TEMPLATE = load_template("putty")
INI_TEMPLATE = load_template("winscp")
XML_TEMPLATE = load_template("filezilla")

# Executables and keys with spaces, non-ASCII letters, backslash sequences PuTTY's
# formatter would misread (\t, \n, \x41) and a literal percent sign.
WIN_EXE = r"C:\Users\Jürgen Müller\AppData\Roaming\Python\Scripts\sshkit.exe"
WIN_TRAPS = r"C:\tools\new\x41 100% %host %port \"odd\"\sshkit.exe"
WIN_KEY = r"C:\Users\Jürgen Müller\.ssh\sshkit\default\id_container.ppk"
POSIX_EXE = "/opt/my tools/sshkit"
KEYS = [WIN_KEY, "/home/ünï côdé/.ssh/id container.ppk", r"C:\plain\key.ppk"]


# --- a .reg parser written for the tests --------------------------------------------


def parse_reg(data: bytes) -> dict[str, dict[str, str | int]]:
    """Parse a regedit-5 file into {key: {name: str | int}}; strict about syntax."""
    assert data.startswith(b"\xff\xfe"), "regedit 5 files are UTF-16LE with a BOM"
    text = data[2:].decode("utf-16-le")
    assert "\n" not in text.replace("\r\n", ""), "every line ends in CRLF"
    lines = text.split("\r\n")
    assert lines[0] == "Windows Registry Editor Version 5.00"
    keys: dict[str, dict[str, str | int]] = {}
    current: dict[str, str | int] | None = None
    for line in lines[1:]:
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = keys.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"value outside a key: {line}"
        m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"=(.*)', line)
        assert m, f"not a value line: {line!r}"
        name = _unescape_reg(m.group(1))
        raw = m.group(2)
        if raw.startswith("dword:"):
            assert re.fullmatch(r"dword:[0-9a-f]{8}", raw), raw
            current[name] = int(raw[6:], 16)
        else:
            sm = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', raw)
            assert sm, f"not a REG_SZ value: {raw!r}"
            current[name] = _unescape_reg(sm.group(1))
    return keys


def _unescape_reg(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            assert s[i + 1] in '\\"', f"bad escape in {s!r}"
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def putty_unescape_key(key: str) -> str:
    """PuTTY's unescape_registry_key."""
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), key)


def windows_argv(cmdline: str) -> list[str]:
    """CommandLineToArgvW's rules (MSVC runtime), to check how Windows splits the command."""
    args: list[str] = []
    cur: list[str] = []
    in_quotes = False
    have = False
    i = 0
    while i < len(cmdline):
        ch = cmdline[i]
        if ch == "\\":
            n = 0
            while i < len(cmdline) and cmdline[i] == "\\":
                n += 1
                i += 1
            if i < len(cmdline) and cmdline[i] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i += 1
            else:
                cur.append("\\" * n)
            have = True
            continue
        if ch == '"':
            in_quotes = not in_quotes
            have = True
        elif ch in " \t" and not in_quotes:
            if have:
                args.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(ch)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def session(**kw: object) -> fmt.ProxySession:
    exe = str(kw.pop("exe", WIN_EXE))
    values: dict[str, object] = {
        "name": "bai-demo-session",
        "host": "demo-session",
        "user": "work",
        "key_file": WIN_KEY,
        "proxy_command": fmt.proxy_command_line(exe, ["relay"]),
    }
    values.update(kw)
    return fmt.ProxySession(**values)  # type: ignore[arg-type]


# --- PuTTY -----------------------------------------------------------------------


@pytest.mark.parametrize("exe", [WIN_EXE, WIN_TRAPS, POSIX_EXE, r"C:\sshkit.exe"])
@pytest.mark.parametrize("key", KEYS)
def test_putty_reg_fields(exe: str, key: str) -> None:
    data = fmt.render_putty_reg(REG_TEMPLATE, session(exe=exe, key_file=key))
    keys = parse_reg(data)
    assert list(keys) == [fmt.PUTTY_SESSIONS_KEY + "\\bai-demo-session"]
    values = keys[fmt.PUTTY_SESSIONS_KEY + "\\bai-demo-session"]
    assert values == {
        "HostName": "demo-session",
        "PortNumber": 22,
        "Protocol": "ssh",
        "UserName": "work",
        "PublicKeyFile": key,
        "ProxyMethod": 5,
        "ProxyTelnetCommand": values["ProxyTelnetCommand"],
        "ProxyDNS": 2,
        "ProxyLocalhost": 1,
        "PingInterval": 0,
        "PingIntervalSecs": 15,
        "TCPKeepalives": 1,
    }
    # What PuTTY's formatter makes of the command, and how Windows splits that.
    stored = values["ProxyTelnetCommand"]
    assert isinstance(stored, str)
    ran = fmt.putty_command_unescape(stored, host="demo-session", port=22)
    assert windows_argv(ran) == [exe, "relay", "--", "demo-session"]


def test_putty_formatter_traps_are_escaped() -> None:
    data = fmt.render_putty_reg(REG_TEMPLATE, session(exe=WIN_TRAPS))
    stored = parse_reg(data)[fmt.PUTTY_SESSIONS_KEY + "\\bai-demo-session"]["ProxyTelnetCommand"]
    assert isinstance(stored, str)
    # Every backslash and percent of the path is doubled; only %host is a token.
    assert "\\t" not in stored.replace("\\\\", "")
    assert stored.endswith(" %host")
    assert "100%% %%host %%port" in stored


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("bai-demo", "bai-demo"),
        ("my session", "my%20session"),
        (".hidden.name", "%2Ehidden.name"),
        ("a*b?c%d\\e", "a%2Ab%3Fc%25d%5Ce"),
        ("tab\there", "tab%09here"),
        ("tilde~ok", "tilde~ok"),
    ],
)
def test_putty_session_name_escaping(name: str, key: str) -> None:
    assert fmt.putty_session_key(name) == key
    assert putty_unescape_key(key) == name


def test_putty_escaped_name_is_the_registry_key() -> None:
    data = fmt.render_putty_reg(REG_TEMPLATE, session(name="GPU box 1"))
    assert list(parse_reg(data)) == [fmt.PUTTY_SESSIONS_KEY + "\\GPU%20box%201"]


def test_putty_refuses_non_ascii_name_and_control_characters() -> None:
    with pytest.raises(UsageError, match="not ASCII"):
        fmt.render_putty_reg(REG_TEMPLATE, session(name="세션"))
    with pytest.raises(UsageError, match="control character"):
        fmt.render_putty_reg(REG_TEMPLATE, session(key_file="C:\\a\nb.ppk"))
    with pytest.raises(UsageError, match="out of range"):
        fmt.render_putty_reg(REG_TEMPLATE, session(port=0))
    with pytest.raises(UsageError, match="bracket"):
        fmt.render_putty_reg(REG_TEMPLATE, session(name="[gpu]"))


def test_putty_keepalive_split_into_minutes_and_seconds() -> None:
    data = fmt.render_putty_reg(REG_TEMPLATE, session(keepalive_seconds=75))
    values = parse_reg(data)[fmt.PUTTY_SESSIONS_KEY + "\\bai-demo-session"]
    assert (values["PingInterval"], values["PingIntervalSecs"]) == (1, 15)


def test_reg_string_escaping_round_trips() -> None:
    for value in ['a"b', "a\\b", '\\"', "plain", "ünï"]:
        assert _unescape_reg(fmt.reg_string(value)[1:-1]) == value


def test_relay_command_with_profile_and_spaces() -> None:
    cmd = fmt.putty_proxy_command(relay_command(["/opt/my tools/sshkit"], "work"))
    assert windows_argv(fmt.putty_command_unescape(cmd, host="s1", port=22)) == [
        "/opt/my tools/sshkit",
        "relay",
        "--profile",
        "work",
        "--",
        "s1",
    ]
    fallback = fmt.putty_proxy_command(
        relay_command([r"C:\Python 3\python.exe", "-m", "sshkit"], None)
    )
    assert windows_argv(fmt.putty_command_unescape(fallback, host="s1", port=22)) == [
        r"C:\Python 3\python.exe",
        "-m",
        "sshkit",
        "relay",
        "--",
        "s1",
    ]


# --- WinSCP ----------------------------------------------------------------------


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


@pytest.mark.parametrize("exe", [WIN_EXE, WIN_TRAPS, POSIX_EXE])
@pytest.mark.parametrize("key", KEYS)
def test_winscp_ini_fields(exe: str, key: str) -> None:
    text = fmt.render_winscp_ini(INI_TEMPLATE, session(exe=exe, key_file=key, name="GPU box"))
    ini = parse_ini(text)
    assert ini.sections() == ["Sessions\\GPU%20box"]
    sec = ini["Sessions\\GPU%20box"]
    assert fmt.winscp_unmunge("GPU%20box") == "GPU box"
    assert dict(sec) == {
        "HostName": "demo-session",
        "PortNumber": "22",
        "UserName": "work",
        "PublicKeyFile": sec["PublicKeyFile"],
        "FSProtocol": "2",
        "ProxyMethod": "5",
        "ProxyTelnetCommand": sec["ProxyTelnetCommand"],
        "ProxyDNS": "2",
        "ProxyLocalhost": "1",
        "PingType": "1",
        "PingInterval": "0",
        "PingIntervalSecs": "15",
    }
    # String values are munged (pure ASCII on disk) and unmunge to the exact path.
    assert sec["PublicKeyFile"].isascii()
    assert " " not in sec["PublicKeyFile"]
    assert fmt.winscp_unmunge(sec["PublicKeyFile"]) == key
    if not key.isascii():
        assert sec["PublicKeyFile"].startswith("%EF%BB%BF")
    # The proxy command is stored raw; PuTTY's formatter then applies.
    ran = fmt.putty_command_unescape(sec["ProxyTelnetCommand"], host="demo-session", port=22)
    assert windows_argv(ran) == [exe, "relay", "--", "demo-session"]


@pytest.mark.parametrize("value", ["plain", "with space", ".dot", "ünï côdé", "100%", "a\\b*?"])
def test_winscp_munge_round_trip(value: str) -> None:
    munged = fmt.winscp_munge(value)
    assert munged.isascii() and " " not in munged
    assert fmt.winscp_unmunge(munged) == value


def test_winscp_refuses_control_characters_and_brackets() -> None:
    with pytest.raises(UsageError):
        fmt.render_winscp_ini(INI_TEMPLATE, session(user="wo\nrk"))
    with pytest.raises(UsageError, match="bracket"):
        fmt.render_winscp_ini(INI_TEMPLATE, session(name="a]b"))


# --- FileZilla -------------------------------------------------------------------


def site(**kw: object) -> fmt.ForwardSite:
    values: dict[str, object] = {
        "name": "bai-demo-session",
        "user": "work",
        "key_file": WIN_KEY,
        "port": 9922,
        "comment": "Start `sshkit forward demo-session -b 9922` first.",
    }
    values.update(kw)
    return fmt.ForwardSite(**values)  # type: ignore[arg-type]


def server_fields(server: ET.Element) -> dict[str, str]:
    return {child.tag: child.text or "" for child in server}


EXPECTED = {
    "Host": "127.0.0.1",
    "Port": "9922",
    "Protocol": "1",
    "Type": "0",
    "User": "work",
    "Keyfile": WIN_KEY,
    "Logontype": "5",
    "TimezoneOffset": "0",
    "PasvMode": "MODE_DEFAULT",
    "MaximumMultipleConnections": "0",
    "EncodingType": "UTF-8",
    "BypassProxy": "1",
    "Name": "bai-demo-session",
    "Comments": "Start `sshkit forward demo-session -b 9922` first.",
}


def test_filezilla_new_file_fields() -> None:
    merged = fmt.merge_filezilla_sites(None, fmt.render_filezilla_server(XML_TEMPLATE, site()))
    assert merged.data.startswith(b'<?xml version="1.0" encoding="UTF-8"')
    root = ET.fromstring(merged.data)
    assert root.tag == "FileZilla3"
    servers = root.findall("Servers/Server")
    assert len(servers) == 1
    assert server_fields(servers[0]) == EXPECTED
    assert not merged.replaced and merged.kept_sites == 0


@pytest.mark.parametrize("key", KEYS)
def test_filezilla_escapes_xml(key: str) -> None:
    name = 'R&D <GPU> "box" ünï'
    xml = fmt.render_filezilla_server(XML_TEMPLATE, site(name=name, key_file=key, user="a&b"))
    root = ET.fromstring(fmt.merge_filezilla_sites(None, xml).data)
    fields = server_fields(root.find("Servers/Server"))  # type: ignore[arg-type]
    assert (fields["Name"], fields["Keyfile"], fields["User"]) == (name, key, "a&b")


EXISTING = """<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>
<FileZilla3 version="3.66.4" platform="windows">
    <!-- my sites, do not lose -->
    <Servers>
        <Server>
            <Host>ftp.example.org</Host>
            <Port>21</Port>
            <Protocol>0</Protocol>
            <Type>0</Type>
            <User>alice</User>
            <Pass encoding="base64">c2VjcmV0</Pass>
            <Logontype>1</Logontype>
            <Name>Example FTP</Name>
        </Server>
        <Folder expanded="1">Work &amp; Play
            <Server>
                <Host>sftp.example.org</Host>
                <Port>22</Port>
                <Protocol>1</Protocol>
                <User>bob</User>
                <Logontype>5</Logontype>
                <Keyfile>C:\\keys\\bob.ppk</Keyfile>
                <Name>bai-demo-session</Name>
            </Server>
        </Folder>
        <Server>Old style name<Host>old.example.org</Host><Port>22</Port></Server>
    </Servers>
</FileZilla3>
"""


def test_filezilla_merge_keeps_existing_sites() -> None:
    xml = fmt.render_filezilla_server(XML_TEMPLATE, site())
    merged = fmt.merge_filezilla_sites(EXISTING.encode(), xml)
    assert not merged.replaced and merged.kept_sites == 3
    root = ET.fromstring(merged.data)
    assert root.attrib == {"version": "3.66.4", "platform": "windows"}
    before = ET.fromstring(EXISTING.encode())
    # Every old site is still there, field for field; ours is appended at the top level.
    old = [server_fields(s) for s in before.iter("Server")]
    new = [server_fields(s) for s in root.iter("Server")]
    assert new[:2] == old[:2]
    top = root.findall("Servers/Server")
    assert server_fields(top[-1]) == EXPECTED
    assert top[-2].text == "Old style name"
    assert root.find("Servers/Folder").text.startswith("Work & Play")  # type: ignore[union-attr]
    assert b"<!-- my sites, do not lose -->" in merged.data
    assert b'<Pass encoding="base64">c2VjcmV0</Pass>' in merged.data
    # The new site is indented like its siblings.
    assert b"\n        <Server>\n            <Host>127.0.0.1</Host>" in merged.data
    assert merged.data.rstrip().endswith(b"    </Servers>\n</FileZilla3>")


def test_filezilla_merge_again_replaces_in_place() -> None:
    first = fmt.merge_filezilla_sites(
        EXISTING.encode(), fmt.render_filezilla_server(XML_TEMPLATE, site())
    )
    again = fmt.merge_filezilla_sites(
        first.data, fmt.render_filezilla_server(XML_TEMPLATE, site(port=2222))
    )
    assert again.replaced and again.kept_sites == 3
    tops = ET.fromstring(again.data).findall("Servers/Server")
    assert len(tops) == 3
    assert server_fields(tops[-1]) == {**EXPECTED, "Port": "2222"}
    # Re-running with the same values changes nothing.
    same = fmt.merge_filezilla_sites(
        again.data, fmt.render_filezilla_server(XML_TEMPLATE, site(port=2222))
    )
    assert same.data == again.data


def test_filezilla_merge_into_file_without_servers() -> None:
    data = b'<?xml version="1.0"?>\n<FileZilla3 version="3.60.0">\n</FileZilla3>\n'
    merged = fmt.merge_filezilla_sites(data, fmt.render_filezilla_server(XML_TEMPLATE, site()))
    assert [server_fields(s) for s in ET.fromstring(merged.data).iter("Server")] == [EXPECTED]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<FileZilla3><Servers>", "not valid XML"),
        (b"<Settings/>", "not a FileZilla sitemanager.xml"),
    ],
)
def test_filezilla_refuses_broken_files(data: bytes, message: str) -> None:
    with pytest.raises(LocalFileError, match=message):
        fmt.merge_filezilla_sites(data, fmt.render_filezilla_server(XML_TEMPLATE, site()))


def test_filezilla_refuses_bad_values() -> None:
    with pytest.raises(UsageError):
        fmt.render_filezilla_server(XML_TEMPLATE, site(name=""))
    with pytest.raises(UsageError):
        fmt.render_filezilla_server(XML_TEMPLATE, site(user="a\x01b"))
    with pytest.raises(UsageError):
        fmt.render_filezilla_server(XML_TEMPLATE, site(port=70000))
