"""Edit VS Code's user settings.json (JSON with comments) without losing anything.

VS Code's settings file is JSONC: ``//`` and ``/* */`` comments and trailing commas are allowed,
and users keep notes in it. Loading it with ``json`` and dumping it back would drop all of that,
so this module edits the text: it tokenizes just enough to find the top-level object and the
``remote.SSH.remotePlatform`` member, then replaces or inserts the smallest span of text.
Every edit is checked by parsing the result and comparing it with the intended data.

Pure: text in, text out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sshkit.errors import LocalFileError

REMOTE_PLATFORM_KEY = "remote.SSH.remotePlatform"

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n\ufeff]+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<punct>[{}\[\]:,])
  | (?P<literal>[^\s{}\[\]:,"/]+)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise LocalFileError(f"VS Code settings: cannot parse near character {pos}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def loads(text: str) -> Any:
    """Parse JSONC (comments and trailing commas allowed). Raises LocalFileError."""
    toks = [t for t in _tokens(text) if t.kind not in ("ws", "line_comment", "block_comment")]
    cleaned: list[str] = []
    for i, t in enumerate(toks):
        if t.text == "," and i + 1 < len(toks) and toks[i + 1].text in ("}", "]"):
            continue
        cleaned.append(t.text)
    if not cleaned:
        return None
    try:
        return json.loads(" ".join(cleaned))
    except json.JSONDecodeError as exc:
        raise LocalFileError(f"VS Code settings are not valid JSON: {exc.msg}") from None


@dataclass
class _Member:
    key: str
    key_tok: int
    value_start: int  # index in the significant-token list
    value_end: int  # exclusive


def _significant(toks: list[_Tok]) -> list[_Tok]:
    return [t for t in toks if t.kind not in ("ws", "line_comment", "block_comment")]


def _skip_value(sig: list[_Tok], i: int) -> int:
    """Index just after the value starting at ``i``."""
    if sig[i].text in ("{", "["):
        depth = 0
        while i < len(sig):
            if sig[i].text in ("{", "["):
                depth += 1
            elif sig[i].text in ("}", "]"):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise LocalFileError("VS Code settings: unbalanced brackets")
    return i + 1


def _members(sig: list[_Tok], open_i: int) -> tuple[list[_Member], int]:
    """Members of the object opening at ``open_i`` and the index of its closing brace."""
    members: list[_Member] = []
    i = open_i + 1
    while i < len(sig) and sig[i].text != "}":
        if sig[i].text == ",":
            i += 1
            continue
        if sig[i].kind != "string" or i + 2 >= len(sig) or sig[i + 1].text != ":":
            raise LocalFileError('VS Code settings: expected a "key": value member')
        key = json.loads(sig[i].text)
        end = _skip_value(sig, i + 2)
        members.append(_Member(key, i, i + 2, end))
        i = end
    if i >= len(sig):
        raise LocalFileError("VS Code settings: object is not closed")
    return members, i


def _line_indent(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    m = re.match(r"[ \t]*", text[line_start:])
    return m.group() if m else ""


def _insert_member(text: str, sig: list[_Tok], open_i: int, key: str, value_json: str) -> str:
    members, close_i = _members(sig, open_i)
    close_pos = sig[close_i].start
    if members:
        last = members[-1]
        indent = _line_indent(text, sig[last.key_tok].start)
        value_end_pos = sig[last.value_end - 1].end
        has_comma = last.value_end < close_i and sig[last.value_end].text == ","
        # Insert after the last non-blank text before '}' (after a trailing comment, if any).
        p = close_pos
        while p > 0 and text[p - 1] in " \t\r\n":
            p -= 1
        new = f"\n{indent}{json.dumps(key)}: {value_json}"
        text = text[:p] + new + text[p:]
        if not has_comma:
            text = text[:value_end_pos] + "," + text[value_end_pos:]
        return text
    open_pos = sig[open_i].end
    outer = _line_indent(text, sig[open_i].start)
    indent = outer + "    "
    inner = text[open_pos:close_pos]
    if inner.strip():  # only comments inside: keep them, add after them
        p = close_pos
        while p > open_pos and text[p - 1] in " \t\r\n":
            p -= 1
        return text[:p] + f"\n{indent}{json.dumps(key)}: {value_json}" + text[p:]
    return (
        text[:open_pos] + f"\n{indent}{json.dumps(key)}: {value_json}\n{outer}" + text[close_pos:]
    )


def set_remote_platform(text: str, alias: str, platform: str = "linux") -> str:
    """Return ``text`` with ``remote.SSH.remotePlatform[alias] = platform``.

    Everything else (comments, order, formatting, trailing commas) is kept. An empty file gets a
    new object. Raises LocalFileError when the text is not a JSON object with comments.
    """
    before = loads(text) if text.strip() else {}
    if not isinstance(before, dict):
        raise LocalFileError("VS Code settings: the file is not a JSON object")
    if not text.strip():
        text = "{\n}\n" if not text else "{\n}" + text
    toks = _tokens(text)
    sig = _significant(toks)
    if not sig or sig[0].text != "{":
        raise LocalFileError("VS Code settings: the file is not a JSON object")
    members, _close = _members(sig, 0)
    target = [m for m in members if m.key == REMOTE_PLATFORM_KEY]
    value_json = json.dumps(platform)
    if not target:
        indent_obj = json.dumps({alias: platform})
        result = _insert_member(text, sig, 0, REMOTE_PLATFORM_KEY, indent_obj)
    else:
        m = target[-1]  # VS Code uses the last duplicate
        if sig[m.value_start].text != "{":
            start = sig[m.value_start].start
            end = sig[m.value_end - 1].end
            result = text[:start] + json.dumps({alias: platform}) + text[end:]
        else:
            inner, _ = _members(sig, m.value_start)
            hit = [x for x in inner if x.key == alias]
            if hit:
                x = hit[-1]
                start, end = sig[x.value_start].start, sig[x.value_end - 1].end
                result = text[:start] + value_json + text[end:]
            else:
                result = _insert_member(text, sig, m.value_start, alias, value_json)
    expected = dict(before)
    platforms = expected.get(REMOTE_PLATFORM_KEY)
    platforms = dict(platforms) if isinstance(platforms, dict) else {}
    platforms[alias] = platform
    expected[REMOTE_PLATFORM_KEY] = platforms
    if loads(result) != expected:  # never write something that does not mean what we intend
        raise LocalFileError("VS Code settings: could not edit the file safely")
    return result


def get_remote_platform(text: str, alias: str) -> str | None:
    """The platform configured for ``alias``, or None. Raises LocalFileError on bad JSON."""
    data = loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        return None
    platforms = data.get(REMOTE_PLATFORM_KEY)
    if isinstance(platforms, dict):
        value = platforms.get(alias)
        return value if isinstance(value, str) else None
    return None
