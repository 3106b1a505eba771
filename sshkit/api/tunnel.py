"""The websocket request that opens a TCP tunnel to a session's app (protocol spec §6.1-6.2),
and the look-up that explains a webserver's refusal of it.

Stdlib only: the relay calls this on every ssh connection (the look-up's
`urllib.request` is imported on that error path only).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

from sshkit import __version__
from sshkit.api.auth import CONTENT_TYPE_WEBSOCKET, format_date, sign_headers
from sshkit.settings import Connection

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    import ssl
    from datetime import datetime

    from sshkit.errors import ApiError, ConfigError

USER_AGENT = f"sshkit/{__version__}"
SESSION_ID_HEADER = "X-BackendAI-SessionID"
# OpenSSL's names for the certificates of a hashed directory (`openssl rehash`).
_HASH_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")
# Largest error body read by `explain_bad_gateway`.
MAX_EXPLAIN_BODY = 64 << 10


def ssl_context(
    verify: bool = True, ca_bundle: str | None = None, *, system_capath: str | None = None
) -> ssl.SSLContext:
    """A client TLS context checking `ca_bundle` (or the system store), unless not `verify`.

    `ca_bundle` is a PEM file, or a directory of OpenSSL hash links (`openssl
    rehash`), whose certificates OpenSSL reads only when a handshake looks one up.
    Without a `ca_bundle`, `system_capath` (from `lazy_system_store`) stands for the
    system store: the same lazy loading instead of parsing the whole bundle (about
    20 ms per relay); None loads the system store as `ssl.create_default_context`
    does. Raises ConfigError when `ca_bundle` cannot be used (missing, unreadable,
    no certificate in the file, no hash link in the directory).
    """
    import ssl

    # create_default_context in every case: its options (strict verify flags on
    # 3.13, SSLKEYLOGFILE) stay the stdlib's.
    if ca_bundle:
        ctx = _ca_bundle_context(ca_bundle)
    elif system_capath:
        ctx = ssl.create_default_context(capath=system_capath)
    else:
        ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ca_bundle_context(ca_bundle: str) -> ssl.SSLContext:
    """`ssl.create_default_context` trusting `ca_bundle`, a PEM file or a hashed directory.

    Raises ConfigError when it cannot be used.
    """
    import ssl

    try:
        if os.path.isdir(ca_bundle):
            # OpenSSL looks certificates up by their hash-link names only: a directory
            # of plain PEM files would verify nothing, and say nothing about why.
            if not _has_hash_links(ca_bundle):
                raise ca_bundle_error(
                    ca_bundle, "the directory holds no OpenSSL hash links (`openssl rehash DIR`)"
                )
            return ssl.create_default_context(capath=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    except ssl.SSLError:
        raise ca_bundle_error(ca_bundle, "no PEM certificate in it") from None
    except OSError as exc:
        raise ca_bundle_error(ca_bundle, exc.strerror or exc.__class__.__name__) from None


def ca_bundle_error(ca_bundle: str, reason: str) -> ConfigError:
    """The error for CA certificates (`--ca-bundle`, SSHKIT_CA_BUNDLE) that cannot be used."""
    from sshkit.errors import ConfigError

    return ConfigError(
        f"cannot use the CA certificates {ca_bundle}: {reason}",
        hint="set them with `sshkit login --ca-bundle FILE` (or DIRECTORY), or SSHKIT_CA_BUNDLE",
    )


def lazy_system_store(
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    capath: str | None = None,
) -> str | None:
    """The system store's hashed directory, when loading only it equals loading the store.

    `ssl.create_default_context()` parses the whole system bundle (on Debian about
    140 certificates, 20 ms of CPU) on every relay; OpenSSL's hashed directory holds
    the same certificates and is read one certificate at a time, as a handshake
    needs them. That is equivalent only where OpenSSL's default paths are the store:
    not on Windows or macOS (the stdlib reads the system's own store there), not
    with SSL_CERT_FILE or SSL_CERT_DIR set (they replace the defaults), and only if
    the directory holds hash links (`0123abcd.0`: without them OpenSSL finds
    nothing there). `environ` defaults to os.environ; `capath` to OpenSSL's default
    directory. Returns None where the eager store must be used. Raises nothing.
    """
    import ssl

    if platform in ("win32", "darwin"):
        return None
    env = os.environ if environ is None else environ
    if "SSL_CERT_FILE" in env or "SSL_CERT_DIR" in env:
        return None
    if capath is None:
        # Not `.capath`: that one reads os.environ, not `environ`.
        capath = ssl.get_default_verify_paths().openssl_capath
    return capath if _has_hash_links(capath) else None


def _has_hash_links(directory: str) -> bool:
    """Whether `directory` holds an OpenSSL hash link; stops at the first. Raises nothing."""
    try:
        with os.scandir(directory) as entries:
            return any(_is_hash_link(entry.name) for entry in entries)
    except (OSError, ValueError):
        return False


def _is_hash_link(name: str) -> bool:
    """Whether `name` is an OpenSSL hash link's (`5ad8a5d6.0`)."""
    return _HASH_LINK.fullmatch(name) is not None


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
    # POSIX time rather than `datetime.now()`: `datetime` costs every relay 1.5 ms.
    date: datetime | float = time.time() if now is None else now
    version = conn.effective_api_version
    headers = {
        "User-Agent": USER_AGENT,
        "X-BackendAI-Domain": conn.domain,
        "X-BackendAI-Version": version,
    }
    if conn.endpoint_type == "api" and conn.access_key and conn.secret_key:
        headers.update(  # the Date too
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
    else:
        headers["Date"] = format_date(date)
        if conn.endpoint_type == "session" and conn.session_id:
            headers[SESSION_ID_HEADER] = conn.session_id
    return f"{scheme}://{parts.netloc}{rel_url}", headers


def explain_bad_gateway(
    conn: Connection,
    session: str,
    app: str,
    headers: Mapping[str, str],
    timeout: float,
) -> ApiError | None:
    """Why the webserver refused a tunnel with 502: it hides the manager's 404/401/403.

    Asks `GET /func/session/{session}` once, with the tunnel's `headers` (session
    mode: they carry the session id and no signature, so they serve this request
    too). No redirect is followed, at most MAX_EXPLAIN_BODY bytes are read, and the
    whole exchange is given up after `timeout` s of wall-clock time. Returns the
    error for a 401, 403 or 404 answer (mapped like every other answer, by
    `sshkit.api.problems.classify`), else None. Raises nothing.
    """
    import threading

    from sshkit.api.problems import classify, tunnel_what

    url = f"{conn.endpoint.rstrip('/')}/func/session/{quote(session, safe='')}"
    if not url.startswith(("http://", "https://")):
        return None
    answer: list[tuple[int, bytes, dict[str, str]]] = []
    # A thread bounds the wall-clock time: urllib's timeout applies to each socket
    # operation, so a server trickling its answer could stretch it without end.
    worker = threading.Thread(
        target=_lookup,
        args=(conn, url, headers, time.monotonic() + timeout, answer),
        name="explain-502",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    if not answer:
        return None
    status, body, answer_headers = answer[0]
    if status not in (401, 403, 404):
        return None
    return classify(
        status,
        body,
        what=tunnel_what(app),
        endpoint_type=conn.endpoint_type,
        session=session,
        app=app,
        headers=answer_headers,
    )


def _lookup(
    conn: Connection,
    url: str,
    headers: Mapping[str, str],
    deadline: float,
    answer: list[tuple[int, bytes, dict[str, str]]],
) -> None:
    """GET `url` without following redirects; append (status, body, headers) to `answer`.

    Appends nothing when the server cannot be reached or the deadline passes.
    """
    import urllib.error
    import urllib.request

    from sshkit.errors import ConfigError

    # No redirect is followed: urllib would copy the session id header to wherever
    # a 3xx points (another host, or https -> http). A 3xx is an HTTPError here.
    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        context = ssl_context(conn.verify_tls, conn.ca_bundle) if url.startswith("https") else None
        opener = urllib.request.build_opener(
            NoRedirects(), urllib.request.HTTPSHandler(context=context)
        )
        request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with opener.open(request, timeout=left) as resp:
            answer.append((resp.status, b"", {}))
    except urllib.error.HTTPError as exc:
        body = bytearray()
        try:
            while len(body) < MAX_EXPLAIN_BODY and time.monotonic() < deadline:
                chunk = exc.read(min(16384, MAX_EXPLAIN_BODY - len(body)))
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        answer.append((exc.code, bytes(body), dict(exc.headers.items())))
    except (OSError, ConfigError):  # ConfigError: CA certificates that cannot be used
        return
