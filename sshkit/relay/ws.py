"""The websocket side of the relay: open the tcpproxy websocket and adapt it to `Channel`.

Uses the `websockets` library's *sync* client (threads, C-accelerated masking).
Handshake failures become sshkit errors with messages a user can act on; the
HTTP status and the problem+json title of the server are used, never the
request headers (they carry credentials).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sshkit.errors import (
    ApiError,
    AuthError,
    NetworkError,
    NotFoundError,
    RelayError,
    ServerError,
    SshkitError,
)
from sshkit.relay.log import RelayLog
from sshkit.relay.pump import Buffer, ChannelClosed, CloseInfo

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

DEFAULT_OPEN_TIMEOUT = 10.0
# Idle proxies and load balancers drop websockets after about 60 s of silence;
# a ping every 20 s keeps them open. A pong missing for 20 s more means the
# server is gone.
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
# Time allowed for the closing handshake once we close.
CLOSE_TIMEOUT = 5.0
# Largest message accepted from the server (the manager sends 256 KiB chunks;
# its own limit is 16 MiB).
MAX_MESSAGE = 16 << 20
# Messages buffered before the reader thread stops reading the socket.
MAX_QUEUE = 16
# Largest message we send; bigger chunks go out as several messages (SSH is a byte
# stream, so message boundaries carry no meaning). The server forwards a message to
# sshd only once all of it arrived, and `websockets` holds its connection lock
# through the whole `sendall` of a frame, which keeps its reader thread (and so
# sshd's window adjustments) waiting. With 1 MiB messages uploads were 10-20%
# slower than with 64 or 128 KiB ones (bench/relay, 2 CPUs).
SEND_FRAME = 128 << 10


@dataclass(frozen=True)
class TunnelTarget:
    """What the websocket leads to, for error messages: a session, an app, the mode."""

    session: str
    app: str = "sshd"
    session_mode: bool = False


def ssl_context(verify: bool = True, ca_bundle: str | None = None) -> ssl.SSLContext:
    """A client TLS context checking `ca_bundle` (or the system store), unless not `verify`."""
    ctx = ssl.create_default_context(cafile=ca_bundle)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _problem(body: bytes | bytearray) -> tuple[str | None, str | None]:
    """Title and msg of a problem+json body, if it is one."""
    try:
        data = json.loads(bytes(body[:65536]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    title = data.get("title")
    msg = data.get("msg") or data.get("details")
    return (
        title if isinstance(title, str) else None,
        msg if isinstance(msg, str) else None,
    )


def handshake_error(status: int, body: bytes | bytearray, target: TunnelTarget) -> ApiError:
    """Map an HTTP answer to the websocket upgrade to an sshkit error."""
    title, msg = _problem(body)
    detail = f" ({title})" if title else ""
    session = target.session
    if status == 401:
        if target.session_mode:
            return AuthError(
                "the login has expired or was revoked" + detail,
                status=status,
                title=title,
                msg=msg,
                hint="run `sshkit login` again",
            )
        return AuthError(
            "the server refused the access key or secret key" + detail,
            status=status,
            title=title,
            msg=msg,
            hint="check the keys with `sshkit login`",
        )
    if status == 403:
        return AuthError(
            f"not allowed to open a tunnel to session {session!r}" + detail,
            status=status,
            title=title,
            msg=msg,
        )
    if status == 400 and msg and "time" in msg.lower():
        return AuthError(
            "the server rejected the request's date; check this computer's clock",
            status=status,
            title=title,
            msg=msg,
        )
    if status == 404:
        if title and "app" in title.lower():
            return NotFoundError(
                f"session {session!r} has no {target.app!r} service",
                status=status,
                title=title,
                msg=msg,
            )
        return NotFoundError(
            f"session {session!r} not found",
            status=status,
            title=title,
            msg=msg,
            hint="list your sessions with `backend.ai session list`",
        )
    if status == 502 and target.session_mode:
        # The webserver hides the manager's answer behind a 502 (spec §2.3).
        return ServerError(
            f"the server could not open a tunnel to session {session!r} (HTTP 502); "
            "the session may not exist or may not be running",
            status=status,
            title=title,
            msg=msg,
        )
    return ServerError(
        f"the server refused the tunnel to session {session!r} (HTTP {status}{detail})",
        status=status,
        title=title,
        msg=msg,
    )


def close_error(info: CloseInfo | None, target: TunnelTarget) -> RelayError | None:
    """The error a closed channel stands for, or None when it closed normally."""
    if info is None or info.clean:
        return None
    session = target.session
    if info.code == 1013:
        return RelayError(
            f"the sshd of session {session!r} refused the connection (close code 1013)",
            hint="the session may still be starting; try again in a moment",
        )
    if info.code == 1011:
        return RelayError(
            f"the server could not connect to the sshd of session {session!r} (close code 1011)"
        )
    if info.code is None:
        if info.reason == "keepalive ping timeout":
            return RelayError(f"the server stopped answering (no pong for {PING_TIMEOUT:.0f} s)")
        why = info.reason or "no close frame"
        return RelayError(f"the connection to the server was lost ({why})")
    reason = f": {info.reason}" if info.reason else ""
    return RelayError(f"the server closed the tunnel with code {info.code}{reason}")


class WebSocketChannel:
    """`Channel` over a `websockets.sync` client connection (binary messages)."""

    def __init__(self, conn: ClientConnection, log: RelayLog | None = None) -> None:
        self._conn = conn
        self._log = log
        self._we_closed = False
        self._close_info: CloseInfo | None = None
        self.text_messages = 0

    def send(self, data: Buffer) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            if len(data) <= SEND_FRAME:
                self._conn.send(data)
            else:
                view = memoryview(data)
                for start in range(0, len(view), SEND_FRAME):
                    self._conn.send(view[start : start + SEND_FRAME])
        except ConnectionClosed as exc:
            raise ChannelClosed(str(exc)) from None

    def recv(self) -> bytes | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                message = self._conn.recv()
            except ConnectionClosed as exc:
                self._close_info = self._info(exc)
                return None
            if isinstance(message, bytes):
                return message
            # The manager ignores text frames; so do we. They never reach stdout.
            self.text_messages += 1
            if self._log:
                self._log.write(f"ignored a text message of {len(message)} characters")

    def _info(self, exc: BaseException) -> CloseInfo:
        rcvd = getattr(exc, "rcvd", None)
        sent = getattr(exc, "sent", None)
        if rcvd is not None:
            first_ours = getattr(exc, "rcvd_then_sent", None) is False
            return CloseInfo(int(rcvd.code), str(rcvd.reason), self._we_closed or first_ours)
        reason = str(sent.reason) if sent is not None and sent.code == 1011 else ""
        return CloseInfo(None, reason, self._we_closed)

    def close_send(self) -> None:
        # A websocket has no half-close: the close frame tells the server we are
        # done; recv() keeps returning what the server still sends until it answers.
        self._we_closed = True
        self._conn.close(1000)

    def abort(self) -> None:
        self._we_closed = True
        closer = threading.Thread(target=self._conn.close, args=(1001,), daemon=True)
        closer.start()
        closer.join(0.5)
        self._conn.close_socket()

    @property
    def close_info(self) -> CloseInfo | None:
        return self._close_info


def open_channel(
    url: str,
    headers: Mapping[str, str],
    target: TunnelTarget,
    *,
    timeout: float = DEFAULT_OPEN_TIMEOUT,
    verify_tls: bool = True,
    ca_bundle: str | None = None,
    log: RelayLog | None = None,
) -> WebSocketChannel:
    """Open the tunnel websocket at `url` with `headers`.

    The proxy settings of the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) are
    honoured by `websockets`. Raises AuthError, NotFoundError, ServerError (HTTP
    answers), NetworkError (DNS, TCP, TLS, proxy, timeout) or RelayError.
    """
    from websockets.exceptions import (
        InvalidHandshake,
        InvalidProxy,
        InvalidStatus,
        InvalidURI,
        ProxyError,
    )
    from websockets.sync.client import connect

    from sshkit import __version__

    parts = urlsplit(url)
    where = parts.hostname or "the server"
    secure = parts.scheme in ("wss", "https")
    context = ssl_context(verify_tls, ca_bundle) if secure else None
    if log:
        # The path names the session; the query and headers are not logged.
        log.write(f"connecting to {parts.scheme}://{parts.netloc}{parts.path}")
    try:
        conn = connect(
            url,
            additional_headers=[(k, v) for k, v in headers.items() if k.lower() != "user-agent"],
            user_agent_header=headers.get("User-Agent", f"sshkit/{__version__}"),
            ssl=context,
            compression=None,
            open_timeout=timeout,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_MESSAGE,
            max_queue=MAX_QUEUE,
            # The connection outlives this function, so no context manager.
            legacy=True,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if log:
            log.write(f"handshake answered HTTP {status}")
        raise handshake_error(status, exc.response.body, target) from None
    except TimeoutError:
        raise NetworkError(
            f"no websocket handshake from {where} within {timeout:g} s",
            hint="the server or a proxy is not answering; raise it with --timeout",
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise NetworkError(
            f"TLS certificate of {where} could not be verified: {exc.verify_message}",
            hint="set the CA bundle with `sshkit login --ca-bundle FILE`",
        ) from None
    except (InvalidProxy, ProxyError) as exc:
        raise NetworkError(f"the proxy refused the connection to {where}: {exc}") from None
    except InvalidURI as exc:
        raise RelayError(f"invalid tunnel URL: {exc.msg}") from None
    except InvalidHandshake as exc:
        raise ServerError(f"{where} did not complete the websocket handshake: {exc}") from None
    except ImportError as exc:  # a SOCKS proxy without python-socks
        raise NetworkError(str(exc)) from None
    except SshkitError:
        raise
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise NetworkError(f"cannot reach {where}: {reason}") from None
    if log:
        log.write("websocket open")
    return WebSocketChannel(conn, log)
