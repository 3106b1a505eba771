"""Upload a small file into a running session: `POST /session/{name}/upload` (multipart).

What the server does with it (manager `api/session.py` `upload_files`, agent
`accept_file`; details in docs/authorized-keys.md): every multipart part is a
file whose *filename* is its path relative to `/home/work`; at most 20 parts,
each under 1 MiB; 204 on success. The official client names the field `src`,
sends `Content-Type: application/octet-stream` per part and, in API mode, signs
the bare content type `multipart/form-data`.

Kept apart from `BackendClient` until the client grows an `upload_session_file`;
it uses only the client's request plumbing.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import quote

from sshkit.errors import UsageError

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient

MAX_FILE_SIZE = 1024 * 1024 - 1  # the server refuses a part once it reaches 1 MiB
FIELD_NAME = "src"
SIGNED_CONTENT_TYPE = "multipart/form-data"


def _quote_filename(name: str) -> str:
    # aiohttp's reader unquotes \" and \\ inside the quoted filename parameter.
    return name.replace("\\", "\\\\").replace('"', '\\"')


def multipart_body(path: str, data: bytes) -> tuple[bytes, str]:
    """One-part multipart/form-data body (field `src`); returns (body, boundary)."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in data:
        boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{FIELD_NAME}"; '
        f'filename="{_quote_filename(path)}"\r\n'
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def upload_session_file(client: BackendClient, session: str, path: str, data: bytes) -> None:
    """Write `data` to `path` (relative to /home/work) in the running session `session`.

    The file is replaced; an existing file keeps its mode on the server. Raises
    UsageError for files the server would refuse as too large, NotFoundError
    for an unknown session, RejectedError / ServerError for refusals and
    agent-side failures, NetworkError.
    """
    if len(data) > MAX_FILE_SIZE:
        raise UsageError(f"{path} would be {len(data)} bytes; session uploads must be under 1 MiB")
    what = f"uploading {path} to session {session!r}"
    url, rel = client._url(f"/session/{quote(session, safe='')}/upload")
    body, boundary = multipart_body(path, data)
    headers = client._auth_headers("POST", rel, SIGNED_CONTENT_TYPE)
    headers["Content-Type"] = f"{SIGNED_CONTENT_TYPE}; boundary={boundary}"
    resp = client._send("POST", url, headers=headers, data=body)
    if resp.status_code >= 400:
        raise client.error_for(resp, what)
