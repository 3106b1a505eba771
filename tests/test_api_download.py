"""The defensive multipart/tar parser of session downloads (sshkit.api.download)."""

from __future__ import annotations

import asyncio
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshkit.api.download import (
    MAX_MEMBER_SIZE,
    extract_single_file,
    parse_multipart,
    parse_session_download,
)
from sshkit.errors import UnsafeDownloadError

KEY = b"-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----\n"
BOUNDARY = "0123456789abcdef"
CTYPE = f"multipart/mixed; boundary={BOUNDARY}"


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_member(name: str = "id_container", data: bytes = KEY) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    return info, data


def special_member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def make_multipart(*bodies: bytes, headers: dict[str, str] | None = None) -> bytes:
    out = b""
    for body in bodies:
        hdrs = {"Content-Type": "application/octet-stream", "Content-Encoding": "identity"}
        hdrs.update(headers or {})
        hdrs.setdefault("Content-Length", str(len(body)))
        head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode()
        out += f"--{BOUNDARY}\r\n".encode() + head + b"\r\n" + body + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_accepts_the_servers_format() -> None:
    body = make_multipart(make_tar(file_member()))
    assert parse_session_download(CTYPE, body, "id_container") == KEY
    assert parse_session_download(CTYPE, body, "/home/work/id_container") == KEY


def test_accepts_what_aiohttp_multipartwriter_produces() -> None:
    from aiohttp import MultipartWriter

    async def build() -> tuple[str, bytes]:
        writer = MultipartWriter("mixed")
        writer.append(
            make_tar(file_member()),
            {"Content-Type": "application/octet-stream", "Content-Encoding": "identity"},
        )
        return writer.headers["Content-Type"], await writer.as_bytes()

    ctype, body = asyncio.run(build())
    assert parse_session_download(ctype, b"preamble\r\n" + body, "id_container") == KEY


def test_quoted_boundary_and_empty_file() -> None:
    body = make_multipart(make_tar(file_member(data=b"")))
    assert (
        parse_session_download(f'multipart/mixed; boundary="{BOUNDARY}"', body, "id_container")
        == b""
    )


@pytest.mark.parametrize(
    ("tar_bytes", "message"),
    [
        (make_tar(file_member("../id_container")), "'..'"),
        (make_tar(file_member("a/../../id_container")), "'..'"),
        (make_tar(file_member("/home/work/id_container")), "absolute"),
        (make_tar(file_member("C:\\id_container")), "absolute"),
        (make_tar(special_member("id_container", tarfile.SYMTYPE, "/etc/passwd")), "link"),
        (make_tar(special_member("id_container", tarfile.LNKTYPE, "other")), "link"),
        (make_tar(special_member("id_container", tarfile.CHRTYPE)), "special"),
        (make_tar(special_member("id_container", tarfile.FIFOTYPE)), "special"),
        (make_tar(special_member("id_container", tarfile.DIRTYPE)), "directory"),
        (make_tar(file_member(), file_member("other")), "2 entries"),
        (make_tar(file_member(), file_member()), "2 entries"),
        (make_tar(), "0 entries"),
        (make_tar(file_member("authorized_keys")), "instead of 'id_container'"),
        (make_tar(file_member(data=b"x" * (2 * 1024 * 1024))), "larger than"),
        (b"this is not a tar file" * 40, "not a valid tar"),
    ],
)
def test_malicious_archives_are_refused(tar_bytes: bytes, message: str) -> None:
    with pytest.raises(UnsafeDownloadError, match=message):
        parse_session_download(CTYPE, make_multipart(tar_bytes), "id_container")


def test_exactly_one_mebibyte_is_fine_one_more_byte_is_not() -> None:
    data = b"k" * MAX_MEMBER_SIZE
    assert extract_single_file(make_tar(file_member(data=data)), "id_container") == data
    with pytest.raises(UnsafeDownloadError):
        extract_single_file(make_tar(file_member(data=data + b"k")), "id_container")


def test_size_in_header_lies() -> None:
    info, data = file_member()
    tar = bytearray(make_tar((info, data)))
    # cut the archive inside the member's data
    with pytest.raises(UnsafeDownloadError):
        extract_single_file(bytes(tar[: 512 + 10]), "id_container")


@pytest.mark.parametrize(
    ("ctype", "body", "message"),
    [
        ("application/octet-stream", KEY, "instead of a multipart"),
        ("application/json", b'{"files": []}', "instead of a multipart"),
        ("", KEY, "untyped"),
        ("multipart/mixed", make_multipart(b""), "no boundary"),
        (CTYPE, b"no delimiters here", "no parts"),
        (CTYPE, f"--{BOUNDARY}\r\nContent-Type: x\r\n\r\nabc".encode(), "truncated"),
        (CTYPE, f"--{BOUNDARY}--\r\n".encode(), "0 parts"),
        (CTYPE, make_multipart(make_tar(file_member()), make_tar(file_member())), "2 parts"),
        (
            CTYPE,
            make_multipart(make_tar(file_member()), headers={"Content-Encoding": "gzip"}),
            "content encoding",
        ),
        (
            CTYPE,
            make_multipart(
                make_tar(file_member()), headers={"Content-Transfer-Encoding": "base64"}
            ),
            "transfer encoding",
        ),
        (
            CTYPE,
            make_multipart(make_tar(file_member()), headers={"Content-Length": "3"}),
            "not as long",
        ),
        (CTYPE, make_multipart(b"x" * (MAX_MEMBER_SIZE + 128 * 1024)), "larger than"),
    ],
)
def test_bad_envelopes_are_refused(ctype: str, body: bytes, message: str) -> None:
    with pytest.raises(UnsafeDownloadError, match=message):
        parse_session_download(ctype, body, "id_container")


def test_part_without_headers() -> None:
    tar = make_tar(file_member())
    body = f"--{BOUNDARY}\r\n\r\n".encode() + tar + f"\r\n--{BOUNDARY}--".encode()
    parts = parse_multipart(CTYPE, body)
    assert len(parts) == 1 and parts[0].headers == {} and parts[0].body == tar


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_garbage_never_escapes_as_another_exception(junk: bytes) -> None:
    for body in (junk, make_multipart(junk)):
        try:
            parse_session_download(CTYPE, body, "id_container")
        except UnsafeDownloadError:
            pass


def test_every_truncation_is_refused() -> None:
    body = make_multipart(make_tar(file_member()))
    for cut in range(0, len(body) - len(f"--{BOUNDARY}--\r\n"), 97):
        with pytest.raises(UnsafeDownloadError):
            parse_session_download(CTYPE, body[:cut], "id_container")
