"""The websocket side of the relay: open the tcpproxy websocket and adapt it to `Channel`.

Two halves:

* the opening: the `websockets` library connects (proxy environment, TLS) and
  checks the handshake with its sans-I/O `ClientProtocol`; a failure becomes an
  sshkit error a user can act on, from the HTTP status and the problem+json title
  of the server, never from the request headers (they carry credentials);
* the data path, once open: `WebSocketChannel` reads and writes RFC 6455 frames on
  the socket itself (`sshkit.relay.frames`). The library's threaded connection
  holds one lock over the whole `sendall` of a frame, so its reader (and with it
  sshd's window adjustments) waited behind every upload frame, and it reassembled
  and copied each message twice; the relay runs on every ssh connection and that
  cost a quarter of the throughput (bench/relay).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from sshkit._record import Record
from sshkit.api.tunnel import lazy_system_store, ssl_context
from sshkit.errors import (
    ApiError,
    NetworkError,
    RelayError,
    ServerError,
)
from sshkit.relay.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Control,
    FrameError,
    FrameParser,
    close_payload,
    encode_frame,
    parse_close,
)
from sshkit.relay.log import RelayLog
from sshkit.relay.pump import Buffer, ChannelClosed, CloseInfo
from sshkit.relay.stdio import is_certificate_error, is_tls_socket

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    import ssl

    from websockets.client import ClientProtocol
    from websockets.sync.utils import Deadline

    from sshkit.relay.splice import PayloadMover

DEFAULT_OPEN_TIMEOUT = 10.0
# Idle proxies and load balancers drop websockets after about 60 s of silence;
# a ping every 20 s keeps them open. A pong missing for 20 s more means the
# server is gone.
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
# Time allowed for the closing handshake once we close.
CLOSE_TIMEOUT = 5.0
# Largest message we send; bigger chunks go out as several messages (SSH is a byte
# stream, so message boundaries carry no meaning). The server forwards a message to
# sshd only once all of it arrived, so smaller messages reach sshd sooner: uploads
# went at 0.78 x direct with 128 KiB messages and 0.83 x with 64 KiB ones, while
# 32 KiB ones cost more in per-message overhead than they won (bench/relay, 2 CPUs).
SEND_FRAME = 64 << 10
# Masking keys are drawn this many bytes at a time (1024 keys): one getrandom call
# per 64 MiB uploaded rather than one per frame. Every key is still fresh and
# unpredictable, from the strong source (RFC 6455 §5.3).
MASK_POOL = 4096
# One read from the socket. The manager sends messages of up to 256 KiB.
RECV_CHUNK = 256 << 10
# Largest HTTP answer head accepted during the handshake.
MAX_RESPONSE_HEAD = 64 << 10


class TunnelTarget(Record):
    """What the websocket leads to, for error messages: a session, an app, the mode."""

    _fields = ("session", "app", "session_mode")
    __slots__ = _fields

    session: str
    app: str
    session_mode: bool

    def __init__(self, session: str, app: str = "sshd", session_mode: bool = False) -> None:
        self._set(session=session, app=app, session_mode=session_mode)


def handshake_error(
    status: int,
    body: bytes | bytearray,
    target: TunnelTarget,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """Map an HTTP answer to the websocket upgrade to an sshkit error.

    The mapping is the API client's (`sshkit.api.problems.classify`), imported
    here on the error path only.
    """
    from sshkit.api.problems import classify, tunnel_what

    return classify(
        status,
        body,
        what=tunnel_what(target.app),
        endpoint_type="session" if target.session_mode else "api",
        session=target.session,
        app=target.app,
        headers=headers,
    )


def close_error(
    info: CloseInfo | None, target: TunnelTarget, *, mid_stream: bool = False
) -> RelayError | None:
    """The error a closed channel stands for, or None when it closed normally.

    A close code from the server is mapped by `sshkit.api.problems.close_code_error`
    (imported on that path only); a connection that ended without one is explained
    here. `mid_stream`: bytes from the target had already arrived.
    """
    if info is None or info.clean:
        return None
    if info.code is None:
        if info.reason == "keepalive ping timeout":
            return RelayError(f"the server stopped answering (no pong for {PING_TIMEOUT:.0f} s)")
        why = info.reason or "no close frame"
        return RelayError(f"the connection to the server was lost ({why})")
    from sshkit.api.problems import close_code_error

    return close_code_error(
        info.code, info.reason, session=target.session, app=target.app, mid_stream=mid_stream
    )


class WebSocketChannel:
    """`Channel` over an open websocket: binary frames out, binary payloads in.

    One thread may `send` while another `recv`s: sending takes a lock of its own,
    which the receiving side needs only to answer a ping or a close. `abort` may
    come from any thread. `recv` returns views of a buffer it reuses, valid until
    the next `recv`.
    """

    def __init__(
        self,
        sock: socket.socket,
        leftover: bytes = b"",
        log: RelayLog | None = None,
        *,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._sock = sock
        self._log = log
        self._random = random
        self._masks = b""
        self._mask_at = 0
        self._close_timeout = close_timeout
        self._ping_timeout = ping_timeout
        self._parser = FrameParser()
        self._buffer = bytearray(RECV_CHUNK)
        self._view = memoryview(self._buffer)
        self._leftover = leftover
        self._pending: deque[Buffer] = deque()
        self._send_lock = threading.Lock()
        self._owed_pong: bytes | None = None
        # TLS sockets have no scatter-gather send.
        self._sendmsg = None if is_tls_socket(sock) else getattr(sock, "sendmsg", None)
        self._recv_into = getattr(sock, "recv_into", None)
        self._mover: PayloadMover | None = None
        self._close_sent = False
        self._we_closed = False
        self._failure: str | None = None
        self._finished = threading.Event()
        # Set once the channel ends or is aborted: the keepalive thread stops.
        self._stopped = threading.Event()
        self._close_timer: threading.Timer | None = None
        self._close_info: CloseInfo | None = None
        self._waiting_since: float | None = None
        if ping_interval is not None:
            threading.Thread(
                target=self._keep_alive, args=(ping_interval,), name="ws-keepalive", daemon=True
            ).start()

    @property
    def text_messages(self) -> int:
        """Text messages received and dropped."""
        return self._parser.text_messages

    # --- sending ----------------------------------------------------------------------

    def send(self, data: Buffer) -> None:
        """Send `data` as binary messages of at most SEND_FRAME bytes.

        Raises ChannelClosed once a close frame went out or the socket failed.
        """
        if self._close_sent or self._finished.is_set():
            raise ChannelClosed("the websocket is closing")
        view = memoryview(data)
        try:
            for start in range(0, len(view), SEND_FRAME):
                self._send_frame(OP_BINARY, view[start : start + SEND_FRAME])
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def _send_frame(self, opcode: int, payload: Buffer) -> None:
        """Send one frame, then a pong that the reader could not send meanwhile."""
        with self._send_lock:
            self._write_frame(opcode, payload)
            pong = self._owed_pong
            if pong is not None:
                self._owed_pong = None
                self._write_frame(OP_PONG, pong)

    def _next_mask(self) -> bytes:
        """A fresh masking key; the caller holds the send lock."""
        at = self._mask_at
        if at >= len(self._masks):
            self._masks, at = self._random(MASK_POOL), 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]

    def _write_frame(self, opcode: int, payload: Buffer) -> None:
        """Write a frame; the caller holds the send lock."""
        header, body = encode_frame(opcode, payload, self._next_mask())
        if self._sendmsg is None:
            self._sock.sendall(header + body)
            return
        sent = self._sendmsg([header, body])
        if sent < len(header) + len(body):
            self._sock.sendall((header + body)[sent:])

    def _pong(self, payload: bytes) -> None:
        """Answer a ping without waiting behind a blocked upload.

        When the sender holds the lock (its `sendall` waits for the server to read),
        the reader must not wait for it: the server may be waiting for us to read.
        The pong then goes out right after the sender's frame; answering the latest
        ping only is allowed (RFC 6455 §5.5.3).
        """
        if not self._send_lock.acquire(blocking=False):
            self._owed_pong = payload
            return
        try:
            if not self._close_sent:
                self._write_frame(OP_PONG, payload)
        except OSError:
            pass
        finally:
            self._send_lock.release()

    def _send_close(self, code: int, reason: str = "", wait: float = 1.0) -> None:
        """Send a close frame once, waiting at most `wait` s for the send lock.

        Errors are ignored: the socket is going away.
        """
        if self._close_sent or not self._send_lock.acquire(timeout=wait):
            return
        try:
            if not self._close_sent:
                self._close_sent = True
                self._write_frame(OP_CLOSE, close_payload(code, reason))
        except OSError:
            pass
        finally:
            self._send_lock.release()

    # --- receiving --------------------------------------------------------------------

    def recv(self) -> Buffer | None:
        """The next received payload bytes (a view valid until the next call), or None.

        None means the channel ended; `close_info` then says how. Raises nothing:
        socket errors and broken framing end the channel.
        """
        while not self._pending:
            if self._finished.is_set():
                return None
            if self._leftover:
                data: Buffer = self._leftover
                self._leftover = b""
            else:
                data = self._read()
                if not data:
                    continue
            try:
                events = self._parser.feed(data)
            except FrameError as exc:
                self._fail(f"protocol error: {exc}", 1002)
                continue
            for event in events:
                if isinstance(event, Control):
                    if self._control(event):
                        break
                else:
                    self._pending.append(event)
        return self._pending.popleft()

    # --- receiving straight into a file descriptor (sshkit.relay.splice) ---------------

    def direct_sink_supported(self, fd: int) -> bool:
        """Whether `recv_to_fd(fd)` can move payloads without Python copies (os.splice).

        True on Linux for a plain TCP socket and a pipe; the pump then uses
        `recv_to_fd` instead of `recv`. TLS and other sinks keep `recv`.
        """
        from sshkit.relay.splice import can_splice

        return can_splice(self._sock, fd)

    def recv_to_fd(self, fd: int) -> int | None:
        """Move the next received payload bytes to `fd`; return how many, or None at the end.

        Like `recv`, but the payload never enters Python where the kernel can splice
        it. Raises OSError when writing to `fd` failed (the reader went away); socket
        errors and broken framing end the channel (None).
        """
        from sshkit.relay.splice import PayloadMover, SinkFailed

        mover = self._mover
        if mover is None or mover.out_fd != fd:
            leftover, self._leftover = self._leftover, b""
            mover = self._mover = PayloadMover(
                self._sock,
                fd,
                self._parser,
                leftover,
                use_splice=True,
                waiting=self._set_waiting,
                on_fallback=self._splice_refused,
            )
            if self._log:
                self._log.write(f"downloads: os.splice from the socket into fd {fd}")
        while not self._finished.is_set():
            try:
                result = mover.move()
            except SinkFailed as exc:
                raise exc.error from None
            except FrameError as exc:
                self._fail(f"protocol error: {exc}", 1002)
                break
            except OSError as exc:
                self._finish(None, self._failure or exc.strerror or exc.__class__.__name__)
                break
            if result is None:
                self._finish(None, self._failure or "no close frame")
                break
            if isinstance(result, int):
                return result
            for event in result:
                if self._control(event):
                    break
        return None

    def _splice_refused(self, error: OSError) -> None:
        if self._log:
            self._log.write(f"downloads: splice refused ({error.strerror}); copying instead")

    def _set_waiting(self, waiting: bool) -> None:
        self._waiting_since = time.monotonic() if waiting else None

    def _read(self) -> Buffer:
        """One read from the socket; b"" once it ended (the channel is then finished)."""
        self._waiting_since = time.monotonic()
        try:
            if self._recv_into is not None:
                size = self._recv_into(self._buffer)
                data: Buffer = self._view[:size]
            else:  # pragma: no cover - TLS-in-TLS through an https proxy
                data = self._sock.recv(RECV_CHUNK)
                size = len(data)
        except OSError as exc:
            self._finish(None, self._failure or exc.strerror or exc.__class__.__name__)
            return b""
        finally:
            self._waiting_since = None
        if not size:
            self._finish(None, self._failure or "no close frame")
        return data

    def _control(self, frame: Control) -> bool:
        """Act on a control frame; return whether the channel is finished."""
        if frame.opcode == OP_PING:
            self._pong(frame.payload)
            return False
        if frame.opcode == OP_PONG:
            return False
        try:
            code, reason = parse_close(frame.payload)
        except FrameError as exc:
            self._fail(f"protocol error: {exc}", 1002)
            return True
        # Echo the code (RFC 6455 §5.5.1); a close without a code is answered with 1000.
        self._send_close(code if code is not None else 1000)
        self._finish(1005 if code is None else code, reason)
        return True

    def _finish(self, code: int | None, reason: str) -> None:
        """Record how the channel ended and let the socket go."""
        if self._finished.is_set():
            return
        self._close_info = CloseInfo(code, reason, self._we_closed)
        if self._log and self._parser.text_messages:
            # What a broken server says there (an HTTP error page) is for the log only.
            self._log.write(
                f"ignored {self._parser.text_messages} text message(s), "
                f"{self._parser.text_bytes} bytes"
            )
        self._finished.set()
        self._stopped.set()
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._shutdown()
        try:
            self._sock.close()
        except OSError:  # pragma: no cover
            pass

    def _fail(self, reason: str, code: int) -> None:
        """End the channel because of `reason`, telling the server with close `code`."""
        if self._log:
            self._log.write(f"closing the websocket: {reason}")
        self._send_close(code)
        self._finish(None, reason)

    def _shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- ending -----------------------------------------------------------------------

    def close_send(self) -> None:
        """Send the close frame (1000) and keep receiving until the server answers."""
        # A websocket has no half-close: the close frame tells the server we are
        # done; recv() keeps returning what the server still sends until it answers.
        self._we_closed = True
        self._send_close(1000)
        if self._close_timer is None:
            self._close_timer = threading.Timer(self._close_timeout, self._give_up_closing)
            self._close_timer.daemon = True
            self._close_timer.start()

    def _give_up_closing(self) -> None:
        if not self._finished.is_set():
            self._failure = "no close frame within the close timeout"
            self._shutdown()

    def abort(self) -> None:
        """Close now, from any thread: a close frame (1001) if it can go out, then the socket."""
        self._we_closed = True
        self._stopped.set()
        if self._finished.is_set():
            return
        # The upstream thread may be stuck in sendall, holding the send lock: give
        # the close frame half a second, then cut the socket, which also unblocks it.
        closer = threading.Thread(target=self._send_close, args=(1001,), daemon=True)
        closer.start()
        closer.join(0.5)
        self._shutdown()
        # Nobody may call recv() again (a failed sink ends the pump), so the socket
        # is closed here too; a reader still inside recv() sees the end.
        try:
            self._sock.close()
        except OSError:  # pragma: no cover
            pass

    def _keep_alive(self, interval: float) -> None:
        """Ping every `interval` s; give up when a ping went unanswered for the timeout.

        The pings keep their period whatever the timeout: waiting for an answer
        must not delay the next ping, or idle proxies see silence for longer than
        the documented interval.
        """
        next_ping = time.monotonic() + interval
        # When the oldest unchecked ping went out, and when to check it.
        checking: tuple[float, float] | None = None
        while True:
            due = next_ping if checking is None else min(next_ping, checking[1])
            if self._stopped.wait(max(0.0, due - time.monotonic())):
                return
            now = time.monotonic()
            if checking is not None and now >= checking[1]:
                if self._server_silent_since(checking[0]):
                    self._give_up_on_pong()
                    return
                checking = None
            if now >= next_ping:
                if self._close_sent:
                    return  # no frame may follow a close frame
                sent = time.monotonic()
                try:
                    self._send_frame(OP_PING, self._random(4))
                except OSError:
                    return
                if checking is None:
                    checking = (sent, sent + self._ping_timeout)
                # The next ping keeps the period, skipping any that a blocked send missed.
                late = time.monotonic() - next_ping
                next_ping += interval * (int(late // interval) + 1)

    def _server_silent_since(self, sent: float) -> bool:
        """Whether the reader has waited on the socket since `sent` and nothing came.

        No pong, no data. A reader busy writing to a slow ssh is not waiting for the
        server, so that does not count against it.
        """
        waiting = self._waiting_since
        return waiting is not None and waiting <= sent

    def _give_up_on_pong(self) -> None:
        self._failure = "keepalive ping timeout"
        if self._log:
            self._log.write("no pong from the server: closing")
        abort = threading.Thread(target=self._send_close, args=(1011,), daemon=True)
        abort.start()
        abort.join(0.5)
        self._shutdown()

    @property
    def close_info(self) -> CloseInfo | None:
        """How the channel ended, once `recv` returned None."""
        return self._close_info


def _handshake(
    sock: socket.socket,
    protocol: ClientProtocol,
    headers: Mapping[str, str],
    user_agent: str,
    deadline: Deadline,
) -> bytes:
    """Send the upgrade request on `sock` and check the answer; return the bytes after it.

    The bytes after the answer's head are frames already (sshd speaks first), so
    the head is fed to `protocol` exactly and the rest handed to the channel.
    Raises what `websockets` raises for a failed handshake, or TimeoutError.
    """
    from websockets.http11 import Response

    request = protocol.connect()
    request.headers.update(headers)
    request.headers.setdefault("User-Agent", user_agent)
    protocol.send_request(request)
    for data in protocol.data_to_send():
        sock.settimeout(deadline.timeout())
        sock.sendall(data)
    head = bytearray()
    leftover = b""
    feeding_all = False
    while True:
        sock.settimeout(deadline.timeout())
        data = sock.recv(65536)
        if not data:
            protocol.receive_eof()
        elif feeding_all:
            protocol.receive_data(data)
        else:
            head += data
            end = head.find(b"\r\n\r\n")
            if end >= 0 and head.startswith(b"HTTP/1.1 101 "):
                protocol.receive_data(bytes(head[: end + 4]))
                leftover = bytes(head[end + 4 :])
            elif end >= 0 or len(head) > MAX_RESPONSE_HEAD:
                # Not an upgrade: the library reads the body (the server's reason).
                feeding_all = True
                protocol.receive_data(bytes(head))
        events = protocol.events_received()
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        if any(isinstance(event, Response) for event in events):
            sock.settimeout(None)
            return leftover
        if not data:
            raise ConnectionError("the server closed the connection during the handshake")


def _connect(
    url: str,
    context: ssl.SSLContext | None,
    headers: Mapping[str, str],
    user_agent: str,
    timeout: float,
) -> tuple[socket.socket, bytes]:
    """Connect and upgrade; return the socket and the bytes received after the answer.

    Without a proxy the stdlib does it (`sshkit.relay.handshake`: no `websockets`
    import on the start-up path); with one, `websockets` opens the connection.
    Raises what `sshkit.relay.handshake.open_direct` raises.
    """
    from sshkit.relay.handshake import open_direct, proxy_configured

    if proxy_configured():
        return _connect_with_library(url, context, headers, user_agent, timeout)
    return open_direct(url, context, headers, user_agent, timeout)


def _connect_with_library(
    url: str,
    context: ssl.SSLContext | None,
    headers: Mapping[str, str],
    user_agent: str,
    timeout: float,
) -> tuple[socket.socket, bytes]:
    """`_connect` through `websockets` (proxies, TLS); the handshake is checked by it.

    The socket is closed on any failure. The library's errors become those of
    `sshkit.relay.handshake` (a proxy failure is a NetworkError); `ssl`, `socket`
    and timeout errors pass through.
    """
    from websockets.client import ClientProtocol
    from websockets.exceptions import (
        InvalidHandshake,
        InvalidProxy,
        InvalidStatus,
        InvalidURI,
        ProxyError,
    )
    from websockets.sync.client import reconnect
    from websockets.sync.utils import Deadline

    from sshkit.relay.handshake import BadTunnelURL, HandshakeFailed, HandshakeStatus

    where = urlsplit(url).hostname or "the server"
    try:
        opener = reconnect(url, ssl=context, user_agent_header=user_agent, compression=None)
        deadline = Deadline(timeout)
        sock = opener.open_socket(deadline)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if context is not None:
                sock = opener.enable_tls(sock, deadline)
            protocol = ClientProtocol(opener.ws_uri, extensions=None, max_size=None)
            return sock, _handshake(sock, protocol, headers, user_agent, deadline)
        except BaseException:
            sock.close()
            raise
    except InvalidStatus as exc:
        response = exc.response
        raise HandshakeStatus(
            response.status_code,
            bytes(response.body or b""),
            {name.lower(): value for name, value in response.headers.raw_items()},
        ) from None
    except (InvalidProxy, ProxyError) as exc:
        raise NetworkError(f"the proxy refused the connection to {where}: {exc}") from None
    except InvalidURI as exc:
        raise BadTunnelURL(exc.msg) from None
    except InvalidHandshake as exc:
        raise HandshakeFailed(str(exc)) from None
    except ImportError as exc:  # a SOCKS proxy without python-socks
        raise NetworkError(str(exc)) from None


def _connect_trusting(
    url: str,
    context: ssl.SSLContext | None,
    capath: str | None,
    headers: Mapping[str, str],
    user_agent: str,
    timeout: float,
    log: RelayLog | None,
) -> tuple[socket.socket, bytes]:
    """`_connect`; when `context` holds the system store lazily (from `capath`) and
    the certificate fails verification, once more with the whole store, within
    `timeout` in all. Raises what `_connect` raises.
    """
    started = time.monotonic()
    try:
        return _connect(url, context, headers, user_agent, timeout)
    except OSError as exc:
        if capath is None or not is_certificate_error(exc):
            raise
        if log:
            log.write(
                f"TLS certificate not verified with the system store's directory {capath}"
                f" ({getattr(exc, 'verify_message', '')}); retrying with the whole system store"
            )
    left = timeout - (time.monotonic() - started)
    if left <= 0:
        raise TimeoutError("no time left to retry")
    return _connect(url, ssl_context(), headers, user_agent, left)


def open_channel(
    url: str,
    headers: Mapping[str, str],
    target: TunnelTarget,
    *,
    timeout: float = DEFAULT_OPEN_TIMEOUT,
    verify_tls: bool = True,
    ca_bundle: str | None = None,
    log: RelayLog | None = None,
    system_store: Callable[[], str | None] = lazy_system_store,
) -> WebSocketChannel:
    """Open the tunnel websocket at `url` with `headers`.

    The proxy settings of the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) are
    honoured by `websockets`; redirects are not followed. Without a `ca_bundle`,
    TLS is verified against the system store, loaded lazily from the directory
    `system_store()` names (None: the whole store, eagerly); a certificate that
    store cannot verify is tried once more against the whole store, so that a
    directory out of step with the system bundle fails nothing the bundle accepts.
    Raises AuthError, NotFoundError, ServerError (HTTP answers), NetworkError (DNS,
    TCP, TLS, proxy, timeout) or RelayError.
    """
    from sshkit import __version__
    from sshkit.relay.handshake import BadTunnelURL, HandshakeFailed, HandshakeStatus

    parts = urlsplit(url)
    where = parts.hostname or "the server"
    secure = parts.scheme in ("wss", "https")
    capath = system_store() if secure and verify_tls and not ca_bundle else None
    context = ssl_context(verify_tls, ca_bundle, system_capath=capath) if secure else None
    user_agent = headers.get("User-Agent", f"sshkit/{__version__}")
    extra = {k: v for k, v in headers.items() if k.lower() != "user-agent"}
    if log:
        # The path names the session; the query and headers are not logged.
        log.write(f"connecting to {parts.scheme}://{parts.netloc}{parts.path}")
        if capath:
            log.write(f"TLS: the system store, read lazily from {capath}")
    try:
        sock, leftover = _connect_trusting(url, context, capath, extra, user_agent, timeout, log)
    except HandshakeStatus as exc:
        if log:
            log.write(f"handshake answered HTTP {exc.status}")
        raise handshake_error(exc.status, exc.body, target, exc.headers) from None
    except TimeoutError:
        raise NetworkError(
            f"no websocket handshake from {where} within {timeout:g} s",
            hint="the server or a proxy is not answering; raise it with --timeout",
        ) from None
    except BadTunnelURL as exc:
        raise RelayError(f"invalid tunnel URL: {exc}") from None
    except HandshakeFailed as exc:
        raise ServerError(f"{where} did not complete the websocket handshake: {exc}") from None
    except OSError as exc:
        if is_certificate_error(exc):
            raise NetworkError(
                f"TLS certificate of {where} could not be verified: "
                f"{getattr(exc, 'verify_message', '')}",
                hint="set the CA certificates with `sshkit login --ca-bundle FILE` (or DIRECTORY)",
            ) from None
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        raise NetworkError(f"cannot reach {where}: {reason}") from None
    if log:
        log.write("websocket open")
    return WebSocketChannel(sock, leftover, log)
