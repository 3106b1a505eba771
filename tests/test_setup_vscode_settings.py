"""JSONC-preserving edit of VS Code's settings.json (remote.SSH.remotePlatform)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshkit.errors import LocalFileError
from sshkit.formats.vscode_settings import get_remote_platform, loads, set_remote_platform

WITH_COMMENTS = """// My settings
{
    // font
    "editor.fontSize": 14, /* inline */
    "files.exclude": {
        "**/.git": true,
    },
    "workbench.colorTheme": "Default Dark+" // trailing comment
}
"""


def test_adds_member_and_keeps_comments() -> None:
    out = set_remote_platform(WITH_COMMENTS, "bai-vscode")
    assert get_remote_platform(out, "bai-vscode") == "linux"
    for fragment in (
        "// My settings",
        "// font",
        "/* inline */",
        "// trailing comment",
        '"**/.git": true,',
    ):
        assert fragment in out
    data = loads(out)
    assert data["editor.fontSize"] == 14
    assert data["workbench.colorTheme"] == "Default Dark+"
    # idempotent
    assert set_remote_platform(out, "bai-vscode") == out


def test_updates_existing_object() -> None:
    text = '{\n  "remote.SSH.remotePlatform": {\n    "other": "windows", // keep\n  },\n}\n'
    out = set_remote_platform(text, "bai-vscode")
    assert loads(out)["remote.SSH.remotePlatform"] == {"other": "windows", "bai-vscode": "linux"}
    assert "// keep" in out
    out2 = set_remote_platform(out.replace('"linux"', '"macOS"'), "bai-vscode")
    assert get_remote_platform(out2, "bai-vscode") == "linux"


@pytest.mark.parametrize("text", ["", "{}", "{\n}\n", "  \n", "{ // only a comment\n}"])
def test_empty_files(text: str) -> None:
    out = set_remote_platform(text, "bai-vscode")
    assert loads(out) == {"remote.SSH.remotePlatform": {"bai-vscode": "linux"}}


@pytest.mark.parametrize("text", ["[1, 2]", '{ "a": }', '{ "a": 1', "not json"])
def test_invalid_files_refused(text: str) -> None:
    with pytest.raises(LocalFileError):
        set_remote_platform(text, "bai-vscode")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5), st.booleans())
def test_property_other_settings_unchanged(data: dict[str, object], pretty: bool) -> None:
    import json

    text = json.dumps(data, indent=4 if pretty else None)
    out = set_remote_platform(text, "bai-vscode")
    result = loads(out)
    platforms = result.pop("remote.SSH.remotePlatform")
    assert platforms["bai-vscode"] == "linux"
    expected = dict(data)
    expected.pop("remote.SSH.remotePlatform", None)
    assert result == expected
