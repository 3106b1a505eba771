"""The storage-proxy listener: tus upload (PATCH/HEAD/OPTIONS) and file download (spec §7.5, §7.6).

The token from request-upload / request-download is the only credential; no
Authorization or cookie is checked here, as on a real storage proxy.
"""

from __future__ import annotations

import io
import os
import zipfile
from urllib.parse import quote

from aiohttp import web

from tests.emulator.problems import ProblemError, invalid_params
from tests.emulator.state import get_state
from tests.emulator.vfolders import Transfer, resolve

TUS_HEADERS = {
    "Tus-Resumable": "1.0.0",
    "Cache-Control": "no-store",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Upload-Offset, Upload-Length, Tus-Resumable",
}
READ_CHUNK = 1024 * 1024


def _no_upload_session() -> ProblemError:
    return ProblemError(404, "storage/no-such-upload-session", "No such upload session")


def _upload(request: web.Request) -> tuple[str, Transfer]:
    token = request.query.get("token", "")
    transfer = get_state(request).folders.transfer(token, "upload")
    if transfer is None or transfer.staging is None or not transfer.staging.exists():
        raise _no_upload_session()
    return token, transfer


def _finalize(transfer: Transfer) -> None:
    assert transfer.staging is not None
    dest = resolve(transfer.folder, transfer.relpath)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(transfer.staging, dest)


async def tus_patch(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    token, transfer = _upload(request)
    assert transfer.staging is not None
    current = transfer.staging.stat().st_size
    if state.profile.tus_strict_offset:
        raw = request.headers.get("Upload-Offset")
        if raw is None or not raw.strip().isdigit():
            raise invalid_params("Upload-Offset header is required.")
        if int(raw) != current:
            raise ProblemError(
                409,
                "storage/upload-offset-mismatch",
                "Upload offset mismatch",
                msg=f"Upload-Offset {raw} does not match the current offset {current}.",
            )
    with open(transfer.staging, "ab") as fh:
        while chunk := await request.content.read(READ_CHUNK):
            fh.write(chunk)
        offset = fh.tell()
    if offset >= transfer.size:
        _finalize(transfer)
        state.folders.transfers.pop(token, None)
    headers = dict(TUS_HEADERS)
    headers["Upload-Offset"] = str(offset)
    headers["Upload-Length"] = str(transfer.size)
    return web.Response(status=204, headers=headers)


async def tus_head(request: web.Request) -> web.StreamResponse:
    _token, transfer = _upload(request)
    assert transfer.staging is not None
    headers = dict(TUS_HEADERS)
    headers["Upload-Offset"] = str(transfer.staging.stat().st_size)
    headers["Upload-Length"] = str(transfer.size)
    return web.Response(status=200, headers=headers)


async def tus_options(request: web.Request) -> web.StreamResponse:
    headers = dict(TUS_HEADERS)
    headers.update(
        {
            "Tus-Version": "1.0.0",
            "Tus-Max-Size": str(2**40),
            "Access-Control-Allow-Methods": "PATCH, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": (
                "Upload-Offset, Upload-Length, Tus-Resumable, Content-Type"
            ),
        }
    )
    return web.Response(status=204, headers=headers)


async def download(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token", "")
    transfer = get_state(request).folders.transfer(token, "download")
    if transfer is None:
        raise ProblemError(404, "storage/no-such-download-session", "No such download session")
    target = resolve(transfer.folder, transfer.relpath)
    if not target.exists():
        raise ProblemError(404, "storage/file-not-found", "File not found")
    archive = transfer.archive or request.query.get("archive") in ("true", "1")
    name = target.name
    if target.is_dir():
        if not archive:
            raise invalid_params("The path is a directory; use archive=true.")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(target.rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(target).as_posix())
        return web.Response(
            body=buf.getvalue(),
            content_type="application/zip",
            headers={"Content-Disposition": _disposition(name + ".zip")},
        )
    # FileResponse gives Content-Length, Last-Modified, Accept-Ranges, Range and If-Range.
    return web.FileResponse(
        target,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": _disposition(name),
        },
    )


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment;filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def storage_routes() -> list[web.RouteDef]:
    return [
        web.patch("/upload", tus_patch),
        web.head("/upload", tus_head),
        web.options("/upload", tus_options),
        web.get("/download", download, allow_head=False),
    ]
