"""OpenSSH `authorized_keys` files: parse keeping every byte, merge, remove, render.

The line syntax follows sshd(8) "AUTHORIZED_KEYS FILE FORMAT" and OpenSSH's
own reader (`auth2-pubkeyfile.c`, `sshkey_advance_past_options`):

* blank lines and lines whose first non-blank character is `#` are ignored;
* otherwise a line is `[options] keytype base64-blob [comment]`. sshd first
  tries to read a key at the start of the line; only when that fails does it
  skip an options field, which ends at the first space or tab outside double
  quotes (`\\"` inside quotes is an escaped quote), and try again;
* the comment is everything after the blob and is ignored by sshd.

A parsed file is a sequence of `Line`s whose `raw` bytes (terminator
included: LF, CRLF, or nothing on a last line) concatenate back to the input
exactly, so rewriting a file never disturbs the lines sshkit did not add.
Keys are identified by their decoded blob (plus whether the line is a
`cert-authority` line, which means something else), never by their text.

Pure module: bytes and text in, bytes and text out.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sshkit.errors import KeyFormatError, UsageError
from sshkit.formats import keys as keyfmt
from sshkit.formats.sshwire import Reader

MIN_RSA_BITS = 2048

_CERT_SUFFIX = "-cert-v01@openssh.com"

_PRIVATE_MARKERS = (
    "PRIVATE KEY-----",
    "PuTTY-User-Key-File-",
    "SSH2 ENCRYPTED PRIVATE KEY",
    "BEGIN SSH2 PRIVATE KEY",
)
_RFC4716_MARKER = "---- BEGIN SSH2 PUBLIC KEY ----"
_FINGERPRINT_RE = re.compile(r"^(?:SHA256:)?([A-Za-z0-9+/]{43})=?$")

# The option names sshd accepts (auth-options.c, `sshauthopt_parse`; matched without
# regard to case). A line with any other option is rejected whole by sshd, so a key
# that appears only on such a line is not authorized at all.
SSHD_FLAG_OPTIONS = frozenset(
    {
        "restrict",
        "cert-authority",
        "port-forwarding",
        "no-port-forwarding",
        "agent-forwarding",
        "no-agent-forwarding",
        "x11-forwarding",
        "no-x11-forwarding",
        "pty",
        "no-pty",
        "user-rc",
        "no-user-rc",
        "touch-required",
        "no-touch-required",
        "verify-required",
        "no-verify-required",
    }
)
SSHD_VALUE_OPTIONS = frozenset(
    {
        "command",
        "principals",
        "from",
        "expiry-time",
        "environment",
        "permitopen",
        "permitlisten",
        "tunnel",
    }
)
# Options that do not narrow what the key may do (a certificate authority line is a
# different identity altogether).
_UNRESTRICTING = frozenset(
    {
        "cert-authority",
        "port-forwarding",
        "agent-forwarding",
        "x11-forwarding",
        "pty",
        "user-rc",
        "no-touch-required",
    }
)


class LineKind(enum.Enum):
    """What one line of an authorized_keys file is."""

    KEY = "key"
    COMMENT = "comment"
    BLANK = "blank"
    UNPARSED = "unparsed"  # sshd would skip it too; kept verbatim


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One public key as written on an authorized_keys line.

    `text` is the line without its terminator and trailing CR (what sshkit
    writes when it adds the key). `bits` is None for key types sshkit does
    not measure (certificates, unknown future types).
    """

    key_type: str
    blob: bytes
    options: str | None = None
    comment: str = ""
    bits: int | None = None
    text: str = ""

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint as ssh-keygen prints it."""
        return fingerprint_sha256(self.blob)

    @property
    def is_cert_authority(self) -> bool:
        return self.options is not None and "cert-authority" in _option_names(self.options)

    @property
    def usable(self) -> bool:
        """False when sshd rejects the line for its options (an unknown option name,
        a flag given a value or a valued option without one)."""
        return self.options is None or sshd_accepts_options(self.options)

    @property
    def restrictions(self) -> list[str]:
        """The option names on this line that narrow what the key may do."""
        if self.options is None:
            return []
        return sorted(_option_names(self.options) - _UNRESTRICTING)

    @property
    def identity(self) -> tuple[bytes, bool]:
        """Two lines authorize the same thing iff their identities are equal."""
        return (self.blob, self.is_cert_authority)

    def public_line(self) -> str:
        """`keytype base64 [comment]`, without options."""
        b64 = base64.b64encode(self.blob).decode("ascii")
        return f"{self.key_type} {b64}" + (f" {self.comment}" if self.comment else "")


@dataclass(frozen=True, slots=True)
class Line:
    """One line exactly as it is in the file (`raw` includes its terminator)."""

    raw: bytes
    kind: LineKind
    key: KeyEntry | None = None


@dataclass(frozen=True, slots=True)
class AuthorizedKeys:
    """A parsed authorized_keys file; `render()` gives back the exact bytes."""

    lines: tuple[Line, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> AuthorizedKeys:
        """Split `data` into lines and classify each; never raises."""
        return cls(tuple(_classify(raw) for raw in _split_lines(data)))

    def render(self) -> bytes:
        return b"".join(line.raw for line in self.lines)

    def keys(self) -> list[KeyEntry]:
        return [line.key for line in self.lines if line.key is not None]

    def identities(self) -> set[tuple[bytes, bool]]:
        return {key.identity for key in self.keys()}


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What `merge` did: the new file bytes and which keys moved."""

    data: bytes
    added: list[KeyEntry] = field(default_factory=list)
    already_present: list[KeyEntry] = field(default_factory=list)
    removed: list[KeyEntry] = field(default_factory=list)
    # For each already-present key: the line that authorizes it, when it has restrictions.
    restricted: list[KeyEntry] = field(default_factory=list)
    # How many usable key lines the merged file has.
    usable_keys: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


# --- fingerprints -----------------------------------------------------------


def fingerprint_sha256(blob: bytes) -> str:
    """`SHA256:` + unpadded base64 of SHA-256(blob), as ssh-keygen -l prints."""
    return keyfmt.fingerprint_sha256(blob)


def normalize_fingerprint(value: str) -> str:
    """Accept `SHA256:xxx` or the bare 43-character hash; return `SHA256:xxx`.

    Raises UsageError for anything else (MD5 fingerprints included).
    """
    match = _FINGERPRINT_RE.match(value.strip())
    if match is None:
        raise UsageError(
            f"{value.strip()!r} is not a SHA256 key fingerprint",
            hint="fingerprints look like SHA256:AbC...; see `sshkit authorized-keys list`",
        )
    return "SHA256:" + match.group(1)


# --- reading lines ------------------------------------------------------------


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.splitlines(keepends=True)
    # bytes.splitlines also splits on a lone CR, VT, FF...; sshd reads up to LF
    # only, so glue everything back into LF-terminated records.
    out: list[bytes] = []
    current = b""
    for piece in lines:
        current += piece
        if current.endswith(b"\n"):
            out.append(current)
            current = b""
    if current:
        out.append(current)
    return out


def _content(raw: bytes) -> str:
    text = raw[:-1] if raw.endswith(b"\n") else raw
    if text.endswith(b"\r"):
        text = text[:-1]
    return text.decode("utf-8", "surrogateescape")


def _classify(raw: bytes) -> Line:
    text = _content(raw)
    stripped = text.lstrip(" \t")
    if not stripped:
        return Line(raw, LineKind.BLANK)
    if stripped.startswith("#"):
        return Line(raw, LineKind.COMMENT)
    try:
        key = _read_key_line(stripped)
    except _Unparsable:
        return Line(raw, LineKind.UNPARSED)
    return Line(raw, LineKind.KEY, key)


class _Unparsable(Exception):
    """The line is not `[options] type blob [comment]`; carries the reason."""


def _split_token(s: str) -> tuple[str, str]:
    """The first space/tab-delimited token and the rest with leading blanks removed."""
    for i, ch in enumerate(s):
        if ch in " \t":
            return s[:i], s[i:].lstrip(" \t")
    return s, ""


def _decode_blob(key_type: str, b64: str) -> bytes:
    try:
        blob = base64.b64decode(b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _Unparsable("the key data is not valid base64") from None
    try:
        embedded = Reader(blob).text()
    except KeyFormatError:
        embedded = None
    if embedded != key_type:
        raise _Unparsable(f"the key data is not a {key_type} key")
    return blob


def _looks_like_key_type(token: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9@.+_-]*", token)) and (
        token.startswith(("ssh-", "ecdsa-", "sk-", "rsa-")) or "@" in token
    )


def _read_key_at(s: str) -> tuple[str, bytes, str] | None:
    key_type, rest = _split_token(s)
    if not _looks_like_key_type(key_type):
        return None
    b64, comment = _split_token(rest)
    if not b64:
        raise _Unparsable(f"{key_type} is not followed by the key data")
    return key_type, _decode_blob(key_type, b64), comment.rstrip(" \t")


def _advance_past_options(s: str) -> tuple[str, str]:
    quoted = False
    i = 0
    while i < len(s) and (quoted or s[i] not in " \t"):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] == '"':
            i += 1
        elif s[i] == '"':
            quoted = not quoted
        i += 1
    if quoted:
        raise _Unparsable("the options have an unterminated quote")
    return s[:i], s[i:].lstrip(" \t")


def _read_key_line(stripped: str) -> KeyEntry:
    options: str | None = None
    found = _read_key_at(stripped)
    if found is None:
        options, rest = _advance_past_options(stripped)
        if not rest:
            raise _Unparsable("there is no key type and key data")
        found = _read_key_at(rest)
        if found is None:
            raise _Unparsable(f"{_split_token(rest)[0][:40]!r} is not a key type")
    key_type, blob, comment = found
    return KeyEntry(
        key_type=key_type,
        blob=blob,
        options=options,
        comment=comment,
        bits=_key_bits(blob, strict=False),
        text=stripped.rstrip(" \t"),
    )


def _option_names(options: str) -> set[str]:
    names: set[str] = set()
    quoted = False
    start = 0
    for i, ch in enumerate(options + ","):
        if ch == '"' and (i == 0 or options[i - 1] != "\\"):
            quoted = not quoted
        elif ch == "," and not quoted:
            names.add(options[start:i].split("=", 1)[0].strip().lower())
            start = i + 1
    return names


# --- key blobs (decoded by sshkit.formats.keys) --------------------------------


def _option_items(options: str) -> list[str]:
    """The comma-separated items of an options field (commas inside quotes kept)."""
    items: list[str] = []
    start, quoted = 0, False
    for i, ch in enumerate(options + ","):
        if ch == '"' and (i == 0 or options[i - 1] != "\\"):
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(options[start:i])
            start = i + 1
    return items


def sshd_accepts_options(options: str) -> bool:
    """True when sshd would accept this options field (names as in `SSHD_*_OPTIONS`)."""
    for item in _option_items(options):
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if name in SSHD_FLAG_OPTIONS:
            if eq:
                return False
        elif name in SSHD_VALUE_OPTIONS:
            if not (eq and value.startswith('"') and value.endswith('"') and len(value) >= 2):
                return False
        else:
            return False
    return True


def _key_bits(blob: bytes, *, strict: bool) -> int | None:
    """Key size in bits; with strict=True a malformed or unknown blob raises _Unparsable."""
    try:
        return keyfmt.PublicKey.from_blob(blob).bits
    except KeyFormatError as exc:
        if strict:
            raise _Unparsable(exc.message) from None
        return None


# --- new keys (strict) ----------------------------------------------------------


def parse_new_keys(data: bytes | str, *, source: str) -> list[KeyEntry]:
    """Read the public keys a user wants to add, refusing anything unsafe.

    `data` is a `.pub` file or a pasted line; several key lines are allowed,
    blank and `#` lines are skipped. `source` names the input in messages
    (a path or "--key"); key material is never echoed.

    Raises KeyFormatError when the input is a private key, an RFC 4716
    public key, a malformed line, no key at all, or a key that
    `check_key_policy` refuses (DSA, RSA under 2048 bits, a certificate).
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")  # editors on Windows add a BOM to .pub files
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise KeyFormatError(
            f"{source} is a private key; refusing to use it (private keys never go into "
            "authorized_keys)",
            hint="give the public key instead, e.g. the matching .pub file",
        )
    if _RFC4716_MARKER in text:
        raise KeyFormatError(
            f"{source} is an RFC 4716 (SSH2) public key, not an OpenSSH one",
            hint=f"convert it first: ssh-keygen -i -f {source}",
        )
    keys: list[KeyEntry] = []
    for number, raw in enumerate(_split_lines(text.encode("utf-8", "surrogateescape")), 1):
        content = _content(raw).lstrip(" \t")
        if not content or content.startswith("#"):
            continue
        where = source if source == "--key" else f"{source} line {number}"
        try:
            entry = _read_key_line(content)
            _key_bits(entry.blob, strict=True)
        except _Unparsable as exc:
            raise KeyFormatError(f"{where} is not a valid public key: {exc}") from None
        check_key_policy(entry, where=where)
        keys.append(entry)
    if not keys:
        raise KeyFormatError(f"no public key found in {source}")
    return keys


def check_key_policy(entry: KeyEntry, *, where: str) -> None:
    """Refuse keys that should not be added to a server today.

    Raises KeyFormatError for DSA keys, RSA keys under 2048 bits, Ed448 keys
    (no OpenSSH support) and certificates (which authorized_keys does not
    accept as keys).
    """
    if entry.key_type == "ssh-dss":
        raise KeyFormatError(
            f"{where} is a DSA (ssh-dss) key; OpenSSH disabled DSA in 7.0 and removed it "
            "in 9.8, so sshd will not accept it",
            hint="generate a new key: ssh-keygen -t ed25519",
        )
    if entry.key_type == "ssh-rsa" and (entry.bits or 0) < MIN_RSA_BITS:
        raise KeyFormatError(
            f"{where} is a {entry.bits}-bit RSA key; keys under {MIN_RSA_BITS} bits are "
            "too weak and refused by current servers",
            hint="generate a new key: ssh-keygen -t ed25519",
        )
    if entry.key_type == "ssh-ed448":
        raise KeyFormatError(
            f"{where} is an Ed448 key, which OpenSSH and dropbear do not support",
            hint="generate a new key: ssh-keygen -t ed25519",
        )
    if entry.key_type.endswith(_CERT_SUFFIX):
        raise KeyFormatError(
            f"{where} is an SSH certificate, which authorized_keys cannot hold as a key",
            hint="add the certificate authority's public key with the cert-authority option",
        )


# --- merging ----------------------------------------------------------------


def merge(
    current: bytes,
    add: Sequence[KeyEntry] = (),
    remove: Iterable[str] = (),
) -> MergeResult:
    """Add keys whose identity is not in `current`; drop keys by fingerprint.

    Every existing line is kept byte for byte (options, comments, blank
    lines, CRLF, order); new keys are appended, LF-terminated, after a line
    break is supplied for a last line that lacks one. `remove` holds
    normalized `SHA256:` fingerprints; every key line with that fingerprint
    goes. Never raises.
    """
    doc = AuthorizedKeys.parse(current)
    drop = set(remove)
    kept: list[Line] = []
    removed: list[KeyEntry] = []
    for line in doc.lines:
        if line.key is not None and line.key.fingerprint in drop:
            removed.append(line.key)
        else:
            kept.append(line)
    # Only lines sshd accepts authorize anything: a key present only on a line with an
    # unknown option is not there as far as sshd is concerned.
    usable = {
        line.key.identity: line.key for line in kept if line.key is not None and line.key.usable
    }
    present = set(usable)
    added: list[KeyEntry] = []
    already: list[KeyEntry] = []
    restricted: list[KeyEntry] = []
    for key in add:
        if key.identity in present:
            already.append(key)
            holder = usable.get(key.identity)
            if holder is not None and holder.restrictions:
                restricted.append(holder)
            continue
        present.add(key.identity)
        added.append(key)
    if added and kept and not kept[-1].raw.endswith(b"\n"):
        last = kept[-1]
        kept[-1] = Line(last.raw + b"\n", last.kind, last.key)
    new_lines = [
        Line(
            (key.text or key.public_line()).encode("utf-8", "surrogateescape") + b"\n",
            LineKind.KEY,
            key,
        )
        for key in added
    ]
    data = AuthorizedKeys(tuple(kept + new_lines)).render()
    return MergeResult(
        data=data,
        added=added,
        already_present=already,
        removed=removed,
        restricted=restricted,
        usable_keys=len(usable) + len(added),
    )


def missing_after(data: bytes, *, added: Iterable[KeyEntry], removed: Iterable[KeyEntry]) -> bool:
    """True when `data` lost an added key or regained a removed one (a lost update)."""
    keys = AuthorizedKeys.parse(data).keys()
    identities = {key.identity for key in keys if key.usable}
    fingerprints = {key.fingerprint for key in keys}
    return any(key.identity not in identities for key in added) or any(
        key.fingerprint in fingerprints for key in removed
    )


def unified_diff(old: bytes, new: bytes, *, label: str) -> str:
    """A unified diff of two versions of a file, for `--dry-run` (empty when equal)."""
    old_lines = old.decode("utf-8", "replace").splitlines(keepends=True)
    new_lines = new.decode("utf-8", "replace").splitlines(keepends=True)
    diff = difflib.unified_diff(old_lines, new_lines, f"a/{label}", f"b/{label}")
    out = []
    for line in diff:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
