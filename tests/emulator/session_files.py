"""Session file upload: `POST /session/{name}/upload` (multipart), as the manager and agent do it.

Modelled on the server code (see docs/authorized-keys.md, "The session file-upload
API"): manager `api/session.py` `upload_files` (newer: `UploadFilesAction` in
`services/session/service.py`), agent `upload_file` RPC -> Docker kernel `accept_file`.

* Every part is a file; its *filename* is the destination, relative to /home/work
  (the official client uses the field name `src`; the server ignores field names).
* More than 20 parts: 400 "Too many files". A part reaching 1 MiB: 400 "Too large file".
  Newer servers name a part without a filename `upload-<hex>` and refuse a nested
  multipart part; 23.09 hands the missing name to the agent, which fails.
* Success: 204 with no body.
* The agent writes host-side into the session's scratch home: parents are created
  (0755), an existing file is truncated in place and keeps its mode, a new file gets
  the agent's umask (0644). Paths outside /home/work fail on the agent, which the
  manager reports as 500 kernel-execution-failed.
* The write does not reach into a folder mounted inside the home (the emulator mounts
  a `.ssh` folder as a symlink): such files land in the scratch directory under the
  mount point, invisible to the container, and the upload still answers 204.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, web

from tests.emulator.problems import internal_error, invalid_params
from tests.emulator.routes import ApiRoute
from tests.emulator.sessions import CONTAINER_HOME, Session, _agent_error
from tests.emulator.state import get_state
from tests.emulator.versions import VersionProfile

MAX_FILES = 20
MAX_FILE_SIZE = 1024 * 1024  # a part is refused once it *reaches* this size
READ_CHUNK = 1024 * 1024
NEW_FILE_MODE = 0o644
NEW_DIR_MODE = 0o755
SHADOW_DIR = "scratch-under-mounts"


def _host_path(sess: Session, filename: str) -> Path:
    """Where the agent writes `filename`: under the scratch home, never through a mount."""
    full = posixpath.normpath(posixpath.join(CONTAINER_HOME, filename))
    if not full.startswith(CONTAINER_HOME + "/"):
        raise _agent_error("PermissionError('Not allowed to upload files outside /home/work')")
    parts = posixpath.relpath(full, CONTAINER_HOME).split("/")
    current = sess.home
    for index, part in enumerate(parts):
        candidate = current / part
        if candidate.is_symlink():
            # A folder mounted here: the host-side write goes to the directory beneath it.
            return sess.dir.joinpath(SHADOW_DIR, *parts)
        current = candidate
        if index < len(parts) - 1 and current.exists() and not current.is_dir():
            raise _agent_error(f"NotADirectoryError('{current.name}')")
    return current


def _write(path: Path, data: bytes) -> None:
    """Path.write_bytes as the agent does it, with the agent's umask made explicit."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=NEW_DIR_MODE)
        os.chmod(directory, NEW_DIR_MODE)
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, NEW_FILE_MODE)
    try:
        if not existed:
            os.fchmod(fd, NEW_FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def upload(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = state.sessions.find(request.match_info["name"])
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        # aiohttp cannot read a non-multipart body; the real handler does not catch it.
        raise internal_error() from exc
    received: list[tuple[str, bytes]] = []
    while True:
        part = await reader.next()
        if part is None:
            break
        if len(received) == MAX_FILES:
            raise invalid_params("Too many files")
        if isinstance(part, MultipartReader):
            if state.profile.name == "23.09":
                raise internal_error()
            raise invalid_params("Nested multipart upload is not supported")
        assert isinstance(part, BodyPartReader)
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(READ_CHUNK):
            if size + len(chunk) >= MAX_FILE_SIZE:
                raise invalid_params("Too large file")
            chunks.append(chunk)
            size += len(chunk)
        filename = part.filename
        if filename is None:
            if state.profile.name == "23.09":
                raise _agent_error(
                    "TypeError('unsupported operand type(s) for /: PosixPath and NoneType')"
                )
            filename = f"upload-{secrets.token_hex(12)}"
        received.append((filename, part.decode(b"".join(chunks))))
    targets = [(_host_path(sess, name), data) for name, data in received]
    for path, data in targets:
        try:
            _write(path, data)
        except IsADirectoryError as exc:
            raise _agent_error(f"IsADirectoryError('{path.name}')") from exc
    return web.Response(status=204)


def api_routes(profile: VersionProfile) -> list[ApiRoute]:
    """The upload route exists, unchanged, in every emulated version."""
    del profile
    return [ApiRoute("POST", "/session/{name}/upload", upload)]
