"""Compute sessions: a home dir + a real sshd each; info, apps, file download, tcpproxy.

Session routes (API form): GET /session/{name}, download / download_single
(verb per server version, spec §5.5), GET /stream/session/{name}/apps and the
websocket /stream/session/{name}/tcpproxy?app=... bridge (spec §6.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import posixpath
import shutil
import tarfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tests.emulator.keys import generate_ssh_keypair, write_private
from tests.emulator.problems import PROBS, ProblemError, invalid_params, not_found
from tests.emulator.routes import ApiRoute, api_params, json_response
from tests.emulator.sshd import SshdProcess, start_sshd
from tests.emulator.state import VIA_WEBSERVER, EmulatorState, get_state
from tests.emulator.versions import VersionProfile

CONTAINER_HOME = "/home/work"
MAX_DOWNLOAD_TAR = 1024 * 1024
MAX_DOWNLOAD_FILES = 5
WS_MAX_MSG = 16 * 1024 * 1024
TCP_CHUNK = 256 * 1024
SSHD_CONTAINER_PORT = 2200
ECHO_CONTAINER_PORT = 7000

# Apps a typical session lists (spec §8.2). Only sshd (and the test-only echo app)
# has a TCP target; tcpproxy to the others is refused like a dead service (1013).
_BASE_APPS: list[dict[str, Any]] = [
    {"name": "sshd", "protocol": "tcp", "ports": [SSHD_CONTAINER_PORT]},
    {"name": "ttyd", "protocol": "http", "ports": [7681]},
]
EXTRA_APPS: dict[str, dict[str, Any]] = {
    "echo": {"name": "echo", "protocol": "tcp", "ports": [ECHO_CONTAINER_PORT]},
}


# Statuses of a session that exists but has no container yet (spec §14).
STARTING_STATUSES = ("PENDING", "PREPARING", "PULLING")


@dataclass
class Session:
    """One compute session: running (with its sshd) or still starting (no container yet)."""

    name: str
    id: str
    home: Path
    dir: Path
    sshd: SshdProcess | None
    created: datetime
    apps: list[dict[str, Any]]
    status: str = "RUNNING"
    bridges: set[web.WebSocketResponse] = field(default_factory=set)
    # Set on termination; session-mode bridges end their upstream side on it.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    starter: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING" and self.sshd is not None

    @property
    def sshd_addr(self) -> str | None:
        return f"127.0.0.1:{self.sshd.port}" if self.sshd is not None else None


class SessionManager:
    """Creates and terminates sessions and owns their sshd processes."""

    def __init__(self, state: EmulatorState, *, namespace: bool) -> None:
        self.state = state
        self.namespace = namespace
        # Keyed by session id: names need not be unique (spec §14, too-many-sessions-matched).
        self.sessions: dict[str, Session] = {}
        self.root = state.options.state_dir / "sessions"
        self._echo_server: asyncio.Server | None = None
        # Session-mode client websockets whose upstream ended (see _end_tunnel).
        self.held_open: set[web.WebSocketResponse] = set()
        self._lock = asyncio.Lock()

    def find(self, ref: str) -> Session:
        """An active session by exact id, else exact name.

        Raises 404 "No such session.", or 404 too-many-sessions-matched when the name
        is shared by several sessions (the manager's lookup, spec §14).
        """
        by_id = self.sessions.get(ref)
        if by_id is not None:
            return by_id
        matches = [s for s in self.sessions.values() if s.name == ref]
        if not matches:
            raise not_found("No such session.", msg=f"Session (id={ref}) does not exist.")
        if len(matches) > 1:
            raise ProblemError(
                404,
                "too-many-sessions-matched",
                "Too many sessions matched.",
                data={
                    "matches": [{"id": s.id, "name": s.name, "status": s.status} for s in matches]
                },
            )
        return matches[0]

    def _prepare_home(self, home: Path) -> None:
        """Write the container home as the agent does (spec §7.8)."""
        home.mkdir(mode=0o700, parents=True)
        pair = self.state.ssh_keypair
        dot_ssh = self.state.folders.get_by_name(".ssh")
        if dot_ssh is not None:
            # The .ssh vfolder is "mounted" over ~/.ssh: the agent writes neither
            # authorized_keys nor id_container; the kernel runner generates a key
            # into the mount only when it has no authorized_keys.
            (home / ".ssh").symlink_to(dot_ssh.path, target_is_directory=True)
            auth = dot_ssh.path / "authorized_keys"
            if not auth.is_file():
                fresh = generate_ssh_keypair()
                write_private(auth, fresh.public_line.encode())
                write_private(home / "id_container", fresh.private_pem.encode())
            return
        if self.state.options.kubernetes:
            # Kubernetes agents mount /home/work/.ssh from a ConfigMap holding the key
            # files, and the key is .ssh/id_container (spec §14). A mount: writes from
            # the agent's side (session uploads) never reach it.
            configmap = home.parent / "ssh-configmap"
            configmap.mkdir(mode=0o700)
            write_private(configmap / "authorized_keys", pair.public_line.encode())
            write_private(configmap / "id_container", pair.private_pem.encode())
            (home / ".ssh").symlink_to(configmap, target_is_directory=True)
            return
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        write_private(ssh_dir / "authorized_keys", pair.public_line.encode())
        write_private(ssh_dir / "id_rsa", pair.private_pem.encode())
        write_private(home / "id_container", pair.private_pem.encode())

    async def create(
        self,
        name: str,
        *,
        extra_apps: list[str] | None = None,
        status: str = "RUNNING",
        ready_after: float | None = None,
    ) -> Session:
        """Create a session: home dir, key files, sshd.

        A `status` of PENDING/PREPARING/PULLING creates it without a container; it
        becomes RUNNING after `ready_after` seconds (never when None). Raises
        ValueError for a bad request.
        """
        async with self._lock:
            if not name or "/" in name or name in (".", ".."):
                raise ValueError("invalid session name")
            if status != "RUNNING" and status not in STARTING_STATUSES:
                raise ValueError(f"status must be RUNNING or one of {', '.join(STARTING_STATUSES)}")
            if ready_after is not None and (status == "RUNNING" or ready_after < 0):
                raise ValueError("ready_after needs a starting status and must be >= 0")
            apps = [dict(a) for a in _BASE_APPS]
            for extra in extra_apps or []:
                if extra not in EXTRA_APPS:
                    raise ValueError(
                        f"unknown extra app {extra!r} (known: {', '.join(EXTRA_APPS)})"
                    )
                apps.append(dict(EXTRA_APPS[extra]))
            sess_id = str(uuid.uuid4())
            sess_dir = self.root / f"{name}-{sess_id[:8]}"
            sess_dir.mkdir(parents=True)
            home = sess_dir / "home"
            sess = Session(
                name=name,
                id=sess_id,
                home=home,
                dir=sess_dir,
                sshd=None,
                created=datetime.now(UTC),
                apps=apps,
                status=status,
            )
            if status == "RUNNING":
                await self._start_container(sess)
            elif ready_after is not None:
                sess.starter = asyncio.ensure_future(self._start_later(sess, ready_after))
            self.sessions[sess_id] = sess
            return sess

    async def _start_container(self, sess: Session) -> None:
        """What the agent does when the kernel starts: the home, its keys, sshd."""
        self._prepare_home(sess.home)
        sess.sshd = await start_sshd(
            kind=self.state.options.sshd,
            session_dir=sess.dir,
            home=sess.home,
            keys_dir=self.state.options.state_dir / "keys",
            user=self.state.ssh_user,
            namespace=self.namespace,
        )
        sess.status = "RUNNING"

    async def _start_later(self, sess: Session, delay: float) -> None:
        await asyncio.sleep(delay)
        if sess.id in self.sessions and sess.status in STARTING_STATUSES:
            try:
                await self._start_container(sess)
            except Exception:
                sess.status = "ERROR"

    async def terminate(self, ref: str) -> Session:
        """Stop a session's sshd and tunnels; it disappears from the API. Raises 404."""
        sess = self.find(ref)
        self.sessions.pop(sess.id, None)
        sess.status = "TERMINATED"
        sess.ended.set()
        if sess.starter is not None:
            sess.starter.cancel()
        for ws in list(sess.bridges):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)
        if sess.sshd is not None:
            await asyncio.to_thread(sess.sshd.stop)
        with contextlib.suppress(OSError):
            shutil.rmtree(sess.dir)
        return sess

    async def stop_all(self) -> None:
        for sess_id in list(self.sessions):
            with contextlib.suppress(Exception):
                await self.terminate(sess_id)
        for ws in list(self.held_open):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)
        if self._echo_server is not None:
            self._echo_server.close()

    async def echo_port(self) -> int:
        """The in-process echo server behind the test-only `echo` app."""
        if self._echo_server is None:

            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while data := await reader.read(TCP_CHUNK):
                        writer.write(data)
                        await writer.drain()
                except OSError:
                    pass
                finally:
                    writer.close()

            self._echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
        return int(self._echo_server.sockets[0].getsockname()[1])


# --- handlers ---


def _container_id(sess: Session, profile: VersionProfile) -> str | None:
    if sess.running:
        return sess.id.replace("-", "") * 2
    # No container yet: 23.09 serialises the missing id with str() (spec §14).
    return "None" if profile.name == "23.09" else None


def _session_info(sess: Session, profile: VersionProfile) -> dict[str, Any]:
    state_slots = json.dumps({"cpu": "1", "mem": "1073741824"})
    return {
        "domainName": "default",
        "groupId": "2de2b969-1d04-48a6-af16-0bc8adb3c831",
        "userId": "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
        "lang": "cr.backend.ai/stable/python:3.9-ubuntu20.04",
        "image": "cr.backend.ai/stable/python:3.9-ubuntu20.04",
        "architecture": "x86_64",
        "registry": "cr.backend.ai",
        "tag": None,
        "containerId": _container_id(sess, profile),
        "occupiedSlots": state_slots,
        "occupyingSlots": state_slots,
        "requestedSlots": state_slots,
        "occupiedShares": "{}",
        "environ": "{}",
        "resourceOpts": "{}",
        "status": sess.status,
        "statusInfo": None,
        "statusData": {},
        "age": int((datetime.now(UTC) - sess.created).total_seconds() * 1000),
        "creationTime": sess.created.isoformat(),
        "terminationTime": None,
        "numQueriesExecuted": 0,
        "lastStat": {},
        "idleChecks": {},
    }


async def get_info(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = state.sessions.find(request.match_info["name"])
    if state.profile.session_info_500 and sess.running:
        # 26.1.0-26.3.3 parse the 64-hex container id as a UUID and fail (spec §14).
        raise ProblemError(500, "internal-server-error", "Something has gone wrong.")
    return json_response(_session_info(sess, state.profile))


async def get_apps(request: web.Request) -> web.StreamResponse:
    sess = get_state(request).sessions.find(request.match_info["name"])
    return json_response(sess.apps if sess.running else [])


def _require_running(sess: Session) -> None:
    """Kernel RPCs (download, tcpproxy) fail for a session with no container yet."""
    if not sess.running:
        raise ProblemError(
            500,
            "internal-server-error",
            "Something has gone wrong.",
            msg=f"The session is not running (status {sess.status}).",
        )


def _agent_error(exception: str) -> ProblemError:
    return ProblemError(
        500,
        "kernel-execution-failed",
        "Executing user code in the kernel has failed.",
        extra={
            "agent-details": {
                "type": PROBS + "agent-failure",
                "title": "Agent-side exception occurred.",
                "exception": exception,
            }
        },
    )


def _resolve_in_home(sess: Session, path: str) -> Path:
    """Map a container path (relative to /home/work, or absolute under it) to the home dir."""
    full = posixpath.normpath(posixpath.join(CONTAINER_HOME, path))
    if full != CONTAINER_HOME and not full.startswith(CONTAINER_HOME + "/"):
        raise _agent_error("PermissionError('You cannot download files outside /home/work')")
    rel = posixpath.relpath(full, CONTAINER_HOME)
    target = sess.home if rel == "." else sess.home / rel
    if not target.exists():
        raise _agent_error(f"FileNotFoundError('Could not found the file: {full}')")
    return target


def _tar_of(target: Path) -> bytes:
    """What Docker's "get archive" returns: a tar with the basename, real mode/uid/gid/mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(target), arcname=target.name or "work")
    data = buf.getvalue()
    if len(data) > MAX_DOWNLOAD_TAR:
        raise _agent_error("ValueError('Too large archive file exceeding 1 MiB')")
    return data


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{boundary}\r\n".encode())
        out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"Content-Encoding: identity\r\n")
        out.write(f"Content-Length: {len(part)}\r\n\r\n".encode())
        out.write(part)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), boundary


async def _download_params(request: web.Request, profile: VersionProfile) -> dict[str, Any]:
    if profile.download_style == "post-json-body":
        # 26.3.0-26.4.6: a `BodyParam`; the query is never read (spec §14).
        raw = await request.read() if request.can_read_body else b""
        if not raw.strip():
            raise ProblemError(
                400, "generic-bad-request", "Bad request.", msg="Request body is empty"
            )
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ProblemError(
                400, "generic-bad-request", "Bad request.", msg="Malformed body"
            ) from exc
        if not isinstance(parsed, dict):
            raise ProblemError(400, "generic-bad-request", "Bad request.", msg="Malformed body")
        return parsed
    return await api_params(request, query_only=profile.download_style == "post-query")


def _agent_failures(profile: VersionProfile) -> contextlib.AbstractContextManager[None]:
    """From 26.1 the agent's RPC error is not converted: a bare 500 (spec §14)."""
    if not profile.download_missing_bare_500:
        return contextlib.nullcontext()
    return _bare_agent_errors()


@contextlib.contextmanager
def _bare_agent_errors() -> Any:
    try:
        yield
    except ProblemError as exc:
        if exc.slug == "kernel-execution-failed":
            raise ProblemError(500, "internal-server-error", "Something has gone wrong.") from exc
        raise


async def download(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = state.sessions.find(request.match_info["name"])
    params = await _download_params(request, state.profile)
    _require_running(sess)
    files = params.get("files")
    if isinstance(files, str) and state.profile.download_style != "post-json-body":
        # tx.MultiKey (<= 26.2) and the query's getall (26.4.7+) make one name a list;
        # 26.3's pydantic `files: list[str]` body refuses a bare string.
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise invalid_params("Input validation error", data={"files": "is required"})
    if len(files) > MAX_DOWNLOAD_FILES:
        if state.profile.name == "23.09":
            raise ProblemError(500, "internal-server-error", "Something has gone wrong.")
        raise invalid_params("Too many files", data={"files": "at most 5 files"})
    with _agent_failures(state.profile):
        tars = [_tar_of(_resolve_in_home(sess, f)) for f in files]
    body, boundary = _multipart(tars)
    return web.Response(
        body=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}
    )


async def download_single(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = state.sessions.find(request.match_info["name"])
    params = await _download_params(request, state.profile)
    _require_running(sess)
    file = params.get("file")
    if not isinstance(file, str) or not file:
        raise invalid_params("Input validation error", data={"file": "is required"})
    with _agent_failures(state.profile):
        target = _resolve_in_home(sess, file)
        _tar_of(target)  # same size limit and errors as the agent's tar path
        if target.is_dir():
            raise _agent_error(f"IsADirectoryError('{file}')")
    return web.Response(body=target.read_bytes(), content_type="application/octet-stream")


async def download_deprecated(request: web.Request) -> web.StreamResponse:
    raise ProblemError(
        400,
        "deprecated",
        "This API is deprecated.",
        msg="Use the HTTP POST method to invoke this API with parameters in the request body.",
    )


async def tcpproxy(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = state.sessions.find(request.match_info["name"])
    app_name = request.query.get("app") or request.query.get("service")
    if not app_name:
        raise invalid_params("Input validation error", data={"app": "is required"})
    # Not running yet: the apps list is empty and the handler fails (500; the
    # webserver turns it into 502).
    _require_running(sess)
    app = next((a for a in sess.apps if a["name"] == app_name), None)
    if app is None:
        raise not_found("No such app service.", msg=f"{sess.name}:{app_name}")
    if "port" in request.query:
        try:
            port = int(request.query["port"])
        except ValueError:
            port = -1
        if not 1024 <= port <= 65535 or port not in app["ports"]:
            raise invalid_params("Invalid port", data={"port": request.query["port"]})
    stall = state.faults.take("stall_handshake", session=sess.name)
    if stall is not None:
        await asyncio.sleep(stall.seconds)
    transport = request.transport
    session_mode = bool(request.get(VIA_WEBSERVER))
    ws = web.WebSocketResponse(autoping=True, max_msg_size=WS_MAX_MSG, compress=False)
    await ws.prepare(request)
    if state.faults.take("refuse_sshd", session=sess.name) is not None:
        return await _end_tunnel(state, ws, WSCloseCode.TRY_AGAIN_LATER, session_mode)
    if app_name == "sshd" and sess.sshd is not None:
        target_port: int | None = sess.sshd.port
    elif app_name == "echo":
        target_port = await state.sessions.echo_port()
    else:
        target_port = None
    if target_port is None:
        return await _end_tunnel(state, ws, WSCloseCode.TRY_AGAIN_LATER, session_mode)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", target_port, limit=TCP_CHUNK)
    except ConnectionRefusedError:
        return await _end_tunnel(state, ws, WSCloseCode.TRY_AGAIN_LATER, session_mode)
    except OSError:
        return await _end_tunnel(state, ws, WSCloseCode.INTERNAL_ERROR, session_mode)
    drop = state.faults.take("drop_tcpproxy", session=sess.name)
    if not session_mode:
        sess.bridges.add(ws)
    try:
        code = await _bridge(
            ws,
            reader,
            writer,
            drop_after=drop.after_bytes if drop else None,
            drop_code=drop.close_code if drop else None,
            transport=transport,
            ended=sess.ended,
        )
    finally:
        sess.bridges.discard(ws)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if code is not None and not ws.closed:
        return await _end_tunnel(state, ws, code, session_mode)
    if not ws.closed:
        # The client left, or a drop fault cut the connection: close our side (this also
        # drains what the client still sent, so the cut is a FIN, not a reset).
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws


async def _end_tunnel(
    state: EmulatorState, ws: web.WebSocketResponse, code: int, session_mode: bool
) -> web.WebSocketResponse:
    """The manager ends a tunnel with `code`.

    In API mode the client gets that close frame. In session mode the webserver's
    `WebSocketProxy` only closes its upstream side: the client's websocket stays
    open, silent, its pings still answered, until the client closes it (spec §14).
    """
    if not session_mode:
        await ws.close(code=code)
        return ws
    held = state.sessions.held_open
    held.add(ws)
    try:
        async for _msg in ws:
            pass  # nothing is forwarded any more; pings are answered by autoping
    finally:
        held.discard(ws)
    return ws


class _Dropped(Exception):
    pass


async def _bridge(
    ws: web.WebSocketResponse,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    drop_after: int | None,
    drop_code: int | None,
    transport: asyncio.Transport | None,
    ended: asyncio.Event,
) -> int | None:
    """Relay binary frames <-> TCP bytes until either side ends (spec §6.2).

    Returns the close code the manager ends the tunnel with (1001 on target EOF or
    termination, a drop fault's code), or None when the client went away or the
    connection was cut. `drop_after` (a fault) cuts the connection once that many
    bytes went to the client.
    """
    budget = [drop_after]

    def spend(data: bytes) -> bytes:
        """Truncate `data` to what the drop fault still allows; raise once exhausted."""
        left = budget[0]
        if left is None:
            return data
        if left <= 0:
            raise _Dropped
        budget[0] = left - len(data)
        return data[:left]

    async def tcp_to_ws() -> int | None:
        while True:
            data = await reader.read(TCP_CHUNK)
            if not data:
                return int(WSCloseCode.GOING_AWAY)
            out = spend(data)
            if out:
                await ws.send_bytes(out)
            if budget[0] is not None and budget[0] <= 0:
                raise _Dropped

    async def ws_to_tcp() -> int | None:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.TEXT:
                continue  # the manager ignores TEXT frames
            else:
                return None  # CLOSE / CLOSING / CLOSED / ERROR

    async def terminated() -> int | None:
        await ended.wait()
        return int(WSCloseCode.GOING_AWAY)

    tasks = [
        asyncio.ensure_future(tcp_to_ws()),
        asyncio.ensure_future(ws_to_tcp()),
        asyncio.ensure_future(terminated()),
    ]
    code: int | None = None
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, _Dropped):
                if drop_code is not None:
                    code = drop_code
                elif transport is not None:
                    # Flush what was sent, then cut the TCP connection with no close frame:
                    # the client sees an abnormal closure (1006) after exactly N bytes.
                    transport.close()
            elif isinstance(exc, (OSError, ConnectionError)):
                code = int(WSCloseCode.GOING_AWAY)
            elif exc is None and task.result() is not None:
                code = task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return code


def api_routes(profile: VersionProfile) -> list[ApiRoute]:
    routes = [
        ApiRoute("GET", "/session/{name}", get_info),
        ApiRoute("GET", "/stream/session/{name}/apps", get_apps),
        ApiRoute("GET", "/stream/session/{name}/tcpproxy", tcpproxy, websocket=True),
    ]
    if profile.download_style == "get-body":
        routes += [
            ApiRoute("GET", "/session/{name}/download", download),
            ApiRoute("GET", "/session/{name}/download_single", download_single),
        ]
    else:
        routes += [
            ApiRoute("POST", "/session/{name}/download", download),
            ApiRoute("POST", "/session/{name}/download_single", download_single),
        ]
        if profile.download_style == "post-body":
            routes += [
                ApiRoute("GET", "/session/{name}/download", download_deprecated),
                ApiRoute("GET", "/session/{name}/download_single", download_deprecated),
            ]
    return routes
