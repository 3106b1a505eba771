"""The Windows exports against what PuTTY, WinSCP and FileZilla really read (issue 14,
items 13, 14, 15)."""

from __future__ import annotations

import configparser
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sshkit.errors import ExitCode, UsageError
from sshkit.formats import exports as fmt
from sshkit.services.exports import filezilla_sitemanager_path, load_template

SSHKIT = Path(sys.executable).parent / "sshkit"
XML_TEMPLATE = load_template("filezilla")


def site(name: str = "bai-s1", port: int = 9922) -> str:
    return fmt.render_filezilla_server(
        XML_TEMPLATE, fmt.ForwardSite(name=name, user="work", key_file="C:\\k.ppk", port=port)
    )


# ---------------------------------------------------------- 13: WinSCP.ini code page


def test_winscp_ini_is_written_in_the_ansi_code_page(tmp_path: Path) -> None:
    exe = tmp_path / "Zoë" / "sshkit"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    key = tmp_path / "k.ppk"
    key.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    out = tmp_path / "site.ini"
    proc = subprocess.run(
        [str(SSHKIT), "export", "winscp", "s1", "--key", str(key), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "SSHKIT_EXECUTABLE": str(exe)},
    )
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert "Zoë".encode("cp1252") in data  # what WinSCP's ANSI reader turns back into "Zoë"
    assert "Zoë".encode() not in data  # UTF-8 would read back as "ZoÃ«"
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(data.decode("cp1252"))
    command = ini["Sessions\\bai-s1"]["ProxyTelnetCommand"]
    assert "Zoë" in command


def test_winscp_ini_refuses_what_the_code_page_cannot_hold() -> None:
    with pytest.raises(UsageError, match="cp1252"):
        fmt.encode_winscp_ini("ProxyTelnetCommand=C:\\Users\\Юля\\sshkit.exe", "cp1252")
    assert fmt.encode_winscp_ini("x=Юля", "cp1251") == "x=Юля".encode("cp1251")
    with pytest.raises(UsageError, match="unknown code page"):
        fmt.encode_winscp_ini("x", "no-such-codepage")


# ------------------------------------------------- 14: FileZilla merge keeps the bytes

FOREIGN = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>\r\n'
    b"<!DOCTYPE FileZilla3>\r\n"
    b"<!-- kept outside the root -->\r\n"
    b'<FileZilla3 version="3.66.4" platform="windows">\r\n'
    b"\t<Servers>\r\n"
    b"\t\t<Server>\r\n"
    b"\t\t\t<Host>a.example</Host>\r\n"
    b"\t\t\t<Comments>line one&#13;&#10;line two &amp; &#x263A;</Comments>\r\n"
    b"\t\t\t<Name>Other</Name>\r\n"
    b"\t\t</Server>\r\n"
    b"\t\t<Server><Host>old</Host><Name>bai-s1</Name></Server>\r\n"
    b"\t\t<Server>\r\n"
    b"\t\t\t<Name>Last</Name>\r\n"
    b"\t\t</Server>\r\n"
    b"\t</Servers>\r\n"
    b"</FileZilla3>\r\n"
    b"<!-- trailing -->\r\n"
)


def test_filezilla_replace_keeps_every_other_byte() -> None:
    merged = fmt.merge_filezilla_sites(FOREIGN, site())
    assert merged.replaced and merged.kept_sites == 2
    old = b"<Server><Host>old</Host><Name>bai-s1</Name></Server>"
    before, after = FOREIGN.split(old)
    assert merged.data.startswith(before) and merged.data.endswith(after)
    middle = merged.data[len(before) : len(merged.data) - len(after)]
    assert b"\n" not in middle.replace(b"\r\n", b"")  # CRLF file, CRLF site
    assert middle.startswith(b"<Server>\r\n\t\t    <Host>127.0.0.1</Host>")
    tops = ET.fromstring(merged.data).findall("Servers/Server")
    assert [s.findtext("Name") for s in tops] == ["Other", "bai-s1", "Last"]
    assert tops[0].findtext("Comments") == "line one\r\nline two & \u263a"


def test_filezilla_append_keeps_every_other_byte() -> None:
    merged = fmt.merge_filezilla_sites(FOREIGN, site(name="bai-new"))
    assert not merged.replaced and merged.kept_sites == 3
    anchor = b"\t\t\t<Name>Last</Name>\r\n\t\t</Server>"
    cut = FOREIGN.index(anchor) + len(anchor)
    assert merged.data.startswith(FOREIGN[:cut])
    assert merged.data.endswith(FOREIGN[cut:])
    inserted = merged.data[cut : len(merged.data) - len(FOREIGN) + cut]
    assert inserted.startswith(b"\r\n\t\t<Server>\r\n")
    assert [s.findtext("Name") for s in ET.fromstring(merged.data).findall("Servers/Server")] == [
        "Other",
        "bai-s1",
        "Last",
        "bai-new",
    ]


def test_filezilla_merge_with_angle_brackets_inside_attribute_values() -> None:
    # XML allows a raw '>' in an attribute value: the spans come from expat's offsets,
    # never from searching for '>', so neither the replaced site nor its neighbours move.
    data = (
        b'<?xml version="1.0"?>\n<FileZilla3 note="a>b">\n\t<Servers x="1>0">\n'
        b'\t\t<Server tag="x>y"><Host>old</Host><Name>bai-s1</Name></Server>\n'
        b'\t\t<Server tag="p>q"/>\n'
        b"\t</Servers>\n</FileZilla3>\n"
    )
    merged = fmt.merge_filezilla_sites(data, site())
    assert merged.replaced and merged.kept_sites == 1
    old = b'<Server tag="x>y"><Host>old</Host><Name>bai-s1</Name></Server>'
    before, after = data.split(old)
    assert merged.data.startswith(before) and merged.data.endswith(after)
    root = ET.fromstring(merged.data)
    assert root.get("note") == "a>b"
    assert [s.get("tag") for s in root.findall("Servers/Server")] == [None, "p>q"]
    assert root.findall("Servers/Server")[0].findtext("Host") == "127.0.0.1"


def test_filezilla_merge_into_empty_servers_element() -> None:
    data = b"<FileZilla3>\n    <Servers/>\n</FileZilla3>\n"
    merged = fmt.merge_filezilla_sites(data, site())
    assert [s.findtext("Name") for s in ET.fromstring(merged.data).iter("Server")] == ["bai-s1"]
    assert merged.data.startswith(b"<FileZilla3>\n    <Servers>\n        <Server>\n")


# ------------------------------------------------------ 15: FileZilla's config folder


def test_filezilla_folder_first_existing_xdg_wins_over_legacy_file(tmp_path: Path) -> None:
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    (xdg / "filezilla").mkdir(parents=True)
    (home / ".filezilla").mkdir(parents=True)
    (home / ".filezilla" / "sitemanager.xml").write_text("<FileZilla3/>")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert filezilla_sitemanager_path(env) == xdg / "filezilla" / "sitemanager.xml"


def test_filezilla_folder_dot_config_exists_but_xdg_does_not(tmp_path: Path) -> None:
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    (home / ".config" / "filezilla").mkdir(parents=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert filezilla_sitemanager_path(env) == home / ".config" / "filezilla" / "sitemanager.xml"


def test_filezilla_folder_legacy_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".filezilla").mkdir(parents=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert filezilla_sitemanager_path(env) == home / ".filezilla" / "sitemanager.xml"


def test_filezilla_folder_none_exists_and_relative_xdg_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    assert filezilla_sitemanager_path({"HOME": str(home), "XDG_CONFIG_HOME": "rel"}) == (
        home / ".config" / "filezilla" / "sitemanager.xml"
    )
    xdg = tmp_path / "xdg"
    assert filezilla_sitemanager_path({"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == (
        xdg / "filezilla" / "sitemanager.xml"
    )


def test_export_filezilla_cli_writes_where_filezilla_looks(
    tmp_path: Path, hermetic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (hermetic_home / ".config" / "filezilla").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "unused-xdg"))
    key = tmp_path / "k.ppk"
    key.write_text("PuTTY-User-Key-File-3: ssh-ed25519\n")
    proc = subprocess.run(
        [str(SSHKIT), "export", "filezilla", "s1", "--key", str(key)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert (hermetic_home / ".config" / "filezilla" / "sitemanager.xml").is_file()
    assert not (tmp_path / "unused-xdg").exists()
