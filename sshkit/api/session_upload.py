"""Upload a small file into a running session: `POST /session/{name}/upload` (multipart).

What the server does with it (manager `api/session.py` `upload_files`, agent
`accept_file`; details in docs/authorized-keys.md): every multipart part is a
file whose *filename* is its path relative to `/home/work`; at most 20 parts,
each under 1 MiB; 204 on success. The official client names the field `src`,
sends `Content-Type: application/octet-stream` per part and, in API mode, signs
the bare content type `multipart/form-data`.

`BackendClient.upload_session_file` sends it; this module only builds the body.
"""

from __future__ import annotations

import secrets

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
