"""The websocket request that opens a TCP tunnel to a session's app (protocol spec §6.1-6.2).

Stdlib only: the relay calls this on every ssh connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode, urlsplit

from sshkit import __version__
from sshkit.api.auth import CONTENT_TYPE_WEBSOCKET, format_date, sign_headers
from sshkit.settings import Connection

USER_AGENT = f"sshkit/{__version__}"
SESSION_ID_HEADER = "X-BackendAI-SessionID"


def tunnel_request(
    conn: Connection, session: str, app: str = "sshd", *, now: datetime | None = None
) -> tuple[str, dict[str, str]]:
    """Return the `ws://`/`wss://` URL of `/stream/session/{session}/tcpproxy?app=...`
    and the headers to send with the upgrade.

    API mode signs with content type `application/octet-stream` (no Content-Type
    header is sent); session mode routes through `/func/` and sends the stored
    session id as `X-BackendAI-SessionID`. `now` defaults to the current UTC time.
    Raises nothing; a Connection without credentials yields unsigned headers.
    """
    parts = urlsplit(conn.endpoint)
    scheme = "wss" if parts.scheme == "https" else "ws"
    prefix = parts.path.rstrip("/")
    if conn.endpoint_type == "session":
        prefix += "/func"
    rel_url = f"{prefix}/stream/session/{quote(session, safe='')}/tcpproxy?" + urlencode(
        {"app": app}
    )
    date = now or datetime.now(UTC)
    version = conn.effective_api_version
    headers = {
        "User-Agent": USER_AGENT,
        "X-BackendAI-Domain": conn.domain,
        "X-BackendAI-Version": version,
        "Date": format_date(date),
    }
    if conn.endpoint_type == "api" and conn.access_key and conn.secret_key:
        headers.update(
            sign_headers(
                "GET",
                rel_url,
                date=date,
                hostname=parts.netloc,
                content_type=CONTENT_TYPE_WEBSOCKET,
                api_version=version,
                access_key=conn.access_key,
                secret_key=conn.secret_key,
            )
        )
    elif conn.endpoint_type == "session" and conn.session_id:
        headers[SESSION_ID_HEADER] = conn.session_id
    return f"{scheme}://{parts.netloc}{rel_url}", headers
