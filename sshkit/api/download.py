"""Defensive parsing of a session file download (protocol spec §5.2). Pure.

The server answers `multipart/mixed`, one part per requested file, each part a
POSIX tar archive made by Docker's "get archive" call. The official client
extracts it with `tarfile.extractall`, keeping whatever paths, links and modes
the archive says. Here the archive is only ever read into memory: exactly one
part holding exactly one regular file, named as requested, no larger than
1 MiB. Anything else raises UnsafeDownloadError and nothing is returned.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass

from sshkit.errors import UnsafeDownloadError

MAX_MEMBER_SIZE = 1024 * 1024
# The server refuses archives over 1 MiB; a tar adds headers and padding, and the
# multipart envelope a little more. Anything beyond this is refused unread.
MAX_BODY_SIZE = MAX_MEMBER_SIZE + 64 * 1024

_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE)
_ALLOWED_TRANSFER_ENCODINGS = frozenset({"binary", "8bit", "7bit"})


@dataclass(frozen=True)
class MultipartPart:
    headers: dict[str, str]
    body: bytes


def parse_multipart(content_type: str, body: bytes) -> list[MultipartPart]:
    """Split a `multipart/*` body into parts (RFC 2046). Raises UnsafeDownloadError."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if not mime.startswith("multipart/"):
        raise UnsafeDownloadError(
            f"the server sent {mime or 'an untyped body'} instead of a multipart download"
        )
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        raise UnsafeDownloadError("the multipart download has no boundary")
    if len(body) > MAX_BODY_SIZE:
        raise UnsafeDownloadError(f"the download is larger than {MAX_BODY_SIZE} bytes")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    # The first delimiter may start the body; later ones always follow a CRLF.
    if body.startswith(delimiter):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise UnsafeDownloadError("the multipart download has no parts")
        pos += 2
    parts: list[MultipartPart] = []
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            break  # closing delimiter; the epilogue is ignored
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise UnsafeDownloadError("the multipart download is malformed")
        head_end = body.find(b"\r\n\r\n", line_end)
        if head_end == line_end:  # no headers at all
            head_end = line_end
            headers_raw = b""
        elif head_end < 0:
            raise UnsafeDownloadError("the multipart download is malformed")
        else:
            headers_raw = body[line_end + 2 : head_end]
        content_start = head_end + 4
        next_delim = body.find(b"\r\n" + delimiter, content_start)
        if next_delim < 0:
            raise UnsafeDownloadError("the multipart download is truncated")
        parts.append(MultipartPart(_parse_headers(headers_raw), body[content_start:next_delim]))
        pos = next_delim + 2
    return parts


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise UnsafeDownloadError("the multipart download has a malformed part header")
        headers[name.strip().lower()] = value.strip()
    return headers


def extract_single_file(tar_bytes: bytes, wanted: str) -> bytes:
    """Return the content of the one regular file `wanted` (a basename) in a tar archive.

    Refused (UnsafeDownloadError): more or fewer than one member, a member that
    is not a regular file (links, devices, directories, FIFOs, sparse files),
    an absolute path or `..`, another name, or more than 1 MiB.
    """
    if len(tar_bytes) > MAX_BODY_SIZE:
        raise UnsafeDownloadError(f"the download is larger than {MAX_BODY_SIZE} bytes")
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            members = tar.getmembers()
            if len(members) != 1:
                raise UnsafeDownloadError(
                    f"the downloaded archive holds {len(members)} entries instead of one file"
                )
            member = members[0]
            _check_member(member, wanted)
            handle = tar.extractfile(member)
            if handle is None:
                raise UnsafeDownloadError("the downloaded archive entry is not a regular file")
            data = handle.read(MAX_MEMBER_SIZE + 1)
    except UnsafeDownloadError:
        raise
    except (tarfile.TarError, EOFError, ValueError, OSError, UnicodeError):
        raise UnsafeDownloadError("the downloaded archive is not a valid tar file") from None
    if len(data) != member.size:
        raise UnsafeDownloadError("the downloaded archive is truncated")
    return data


def _check_member(member: tarfile.TarInfo, wanted: str) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeDownloadError(f"the downloaded archive has an absolute path: {name!r}")
    pieces = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in pieces:
        raise UnsafeDownloadError(f"the downloaded archive has a path with '..': {name!r}")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "link" if member.issym() or member.islnk() else "special file"
        if member.isdir():
            kind = "directory"
        raise UnsafeDownloadError(f"the downloaded archive holds a {kind}, not a file: {name!r}")
    if pieces != [wanted]:
        raise UnsafeDownloadError(f"the downloaded archive holds {name!r} instead of {wanted!r}")
    if member.size > MAX_MEMBER_SIZE:
        raise UnsafeDownloadError(
            f"the downloaded file is larger than {MAX_MEMBER_SIZE} bytes ({member.size})"
        )


def parse_session_download(content_type: str, body: bytes, path: str) -> bytes:
    """Return the bytes of the single file `path` from a session download answer.

    `path` is what was requested; the archive names the file by its basename.
    Raises UnsafeDownloadError for anything but one identity-encoded part
    holding one regular file of that name, at most 1 MiB.
    """
    wanted = re.split(r"[/\\]", path.rstrip("/\\"))[-1]
    if wanted in ("", ".", ".."):
        raise UnsafeDownloadError(f"cannot download {path!r}: not a file name")
    parts = parse_multipart(content_type, body)
    if len(parts) != 1:
        raise UnsafeDownloadError(f"the download holds {len(parts)} parts instead of one")
    part = parts[0]
    encoding = part.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise UnsafeDownloadError(f"the download part has content encoding {encoding!r}")
    transfer = part.headers.get("content-transfer-encoding", "binary").lower()
    if transfer not in _ALLOWED_TRANSFER_ENCODINGS:
        raise UnsafeDownloadError(f"the download part has transfer encoding {transfer!r}")
    declared = part.headers.get("content-length")
    if declared is not None and declared != str(len(part.body)):
        raise UnsafeDownloadError("the download part is not as long as it says")
    return extract_single_file(part.body, wanted)
