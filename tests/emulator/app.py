"""Wiring: options, the three listeners, middlewares, start-up, ready file and shutdown.

Listeners (one process, one event loop):
- manager   (API mode): every route of API_ROUTE_PROVIDERS, HMAC-signed; /_emulator/ hooks.
- webserver (session mode): /server/login|logout|login-check and every API route under /func/.
- storage   (storage proxy): /upload (tus) and /download.

To add an API, write a module with ``api_routes(profile) -> list[ApiRoute]`` and add
it to API_ROUTE_PROVIDERS below: it is then served signed on the manager and under
/func/ on the webserver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.emulator import hooks, keypair, root, session_files, sessions, storage, vfolders
from tests.emulator.auth import signed, web_session_auth, webserver_routes
from tests.emulator.faults import FaultTable
from tests.emulator.keys import ensure_host_key, load_or_create_keypair
from tests.emulator.problems import PROBLEM_JSON, ProblemError, problem_response
from tests.emulator.routes import ApiRoute, Handler
from tests.emulator.sshd import SshdStartError, home_namespace_available
from tests.emulator.state import (
    STATE,
    WEBSERVER_OWN_ERROR,
    Credentials,
    EmulatorState,
    Options,
)
from tests.emulator.totp import new_secret
from tests.emulator.versions import PROFILES, VersionProfile
from tests.emulator.vfolders import FolderStore

log = logging.getLogger("emulator")

# Every API module, served on both the manager and (under /func) the webserver.
API_ROUTE_PROVIDERS: tuple[Callable[[VersionProfile], list[ApiRoute]], ...] = (
    root.api_routes,
    sessions.api_routes,
    vfolders.api_routes,
    keypair.api_routes,
    session_files.api_routes,
)

DEFAULT_SESSION = "demo-session"
CLIENT_MAX_SIZE = 256 * 1024 * 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="Local Backend.AI emulator: manager, webserver, storage proxy, sshd sessions.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=0,
        help="manager port; the webserver uses PORT+1 and storage PORT+2 (0: free ports)",
    )
    p.add_argument("--server-version", choices=sorted(PROFILES), default="26.8")
    p.add_argument("--sshd", choices=("openssh", "dropbear"), default="openssh")
    p.add_argument(
        "--allow-dot-ssh-folder",
        action="store_true",
        help="let POST /folders create a `.ssh` folder (real servers refuse it)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keys, session homes, folders (default: a temp dir removed at exit)",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the connection details here (JSON, atomically) once ready",
    )
    p.add_argument(
        "--login-block-after",
        type=int,
        default=0,
        metavar="N",
        help="answer 429 after N failed logins in 20 min like the webserver (real default 10; "
        "0, the default here, never blocks so shared test emulators cannot lock each other out)",
    )
    p.add_argument(
        "--kubernetes",
        action="store_true",
        help="sessions run on Kubernetes agents: ~/.ssh is a ConfigMap mount and the key is "
        "/home/work/.ssh/id_container",
    )
    p.add_argument(
        "--totp",
        action="store_true",
        help="every login needs a TOTP code (the ready file gets `totp_secret`)",
    )
    p.add_argument(
        "--max-concurrent-logins",
        type=int,
        default=0,
        metavar="N",
        help="the user's max_concurrent_logins (26.8 only): login N+1 answers 409 unless forced",
    )
    p.add_argument(
        "--session",
        action="append",
        default=None,
        metavar="NAME",
        help=f"session(s) to start with (default: {DEFAULT_SESSION})",
    )
    args = p.parse_args(argv)
    if args.max_concurrent_logins and not PROFILES[args.server_version].login_cap_supported:
        p.error("--max-concurrent-logins needs --server-version 26.8 (the cap exists from 26.4.0)")
    if args.totp and not PROFILES[args.server_version].totp_supported:
        p.error("--totp needs --server-version 26.8 (the TOTP plugin answers logins from 26.4)")
    if args.max_concurrent_logins < 0:
        p.error("--max-concurrent-logins must be >= 0")
    return args


# --- middlewares ---


def _middlewares(listener: str) -> list[Any]:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        state = request.config_dict[STATE]
        stripped = request.path[5:] if request.path.startswith("/func/") else request.path
        if not request.path.startswith("/_emulator/"):
            state.log_request(listener, request)
            if state.faults.take("http_500", path=request.path) or (
                stripped != request.path and state.faults.take("http_500", path=stripped)
            ):
                return problem_response(
                    500, "internal-server-error", "Something has gone wrong.", msg="injected fault"
                )
            if listener != "storage" and not request.path.startswith("/server/"):
                limited = _rate_limited(state, request.path, stripped)
                if limited is not None:
                    if state.profile.error_code:
                        _add_error_code(limited, stripped)
                    return limited
        try:
            resp = await handler(request)
        except ProblemError as exc:
            resp = exc.response()
        except web.HTTPMethodNotAllowed as exc:
            allow = ",".join(sorted(exc.allowed_methods))
            resp = problem_response(
                405, "method-not-allowed", "HTTP Method Not Allowed.", headers={"Allow": allow}
            )
        except web.HTTPNotFound:
            resp = problem_response(404, "url-not-found", "Unknown URL path.", data=request.path)
        else:
            return resp
        if state.profile.error_code and not _webserver_own(listener, request):
            _add_error_code(resp, stripped)
        return resp

    return [errors, _unexpected]


def _webserver_own(listener: str, request: web.Request) -> bool:
    """An error the webserver answers itself (/server/*, not logged in, failed websocket
    upstream): the manager's `error_code` is not in it (web/server.py, web/proxy.py)."""
    if listener != "webserver":
        return False
    return request.path.startswith("/server/") or bool(request.get(WEBSERVER_OWN_ERROR))


@web.middleware
async def _unexpected(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Exceptions no handler expected: logged, then 500 like the real server."""
    try:
        return await handler(request)
    except ProblemError:
        raise
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.error(
            "unhandled error on %s %s\n%s", request.method, request.path, traceback.format_exc()
        )
        return problem_response(500, "internal-server-error", "Something has gone wrong.")


def _rate_limited(state: EmulatorState, path: str, stripped: str) -> web.Response | None:
    """The `rate_limit` fault: the manager's 429 for a keypair over its rate (spec §14).

    The middleware raises before it sets its X-RateLimit-* headers, so the 429 carries
    none of them (and no Retry-After): only successful answers do.
    """
    if not (
        state.faults.take("rate_limit", path=path)
        or (stripped != path and state.faults.take("rate_limit", path=stripped))
    ):
        return None
    return problem_response(429, "rate-limit-exceeded", "Rate limit exceeded.")


_ERROR_DOMAINS = (
    ("/session", "session"),
    ("/stream", "session"),
    ("/folders", "vfolder"),
    ("/auth", "user"),
    ("/server", "user"),
)


def _add_error_code(resp: web.StreamResponse, path: str) -> None:
    """Errors carry `error_code` (DOMAIN_OPERATION_DETAIL) from 25.8 (spec §14)."""
    if not isinstance(resp, web.Response) or resp.content_type != PROBLEM_JSON:
        return
    try:
        body = json.loads(resp.body or b"{}")  # type: ignore[arg-type]
    except ValueError:
        return
    if not isinstance(body, dict) or "error_code" in body:
        return
    domain = next((d for prefix, d in _ERROR_DOMAINS if path.startswith(prefix)), "api")
    detail = str(body.get("type", "")).rsplit("/", 1)[-1] or "internal-error"
    body["error_code"] = f"{domain}_generic_{detail}"
    resp.body = json.dumps(body).encode()


def _add_api_routes(app: web.Application, profile: VersionProfile, *, webserver: bool) -> None:
    for provider in API_ROUTE_PROVIDERS:
        for route in provider(profile):
            if webserver:
                handler = web_session_auth(
                    route.handler, public=route.public, websocket=route.websocket
                )
                path = "/func" + route.path
                app.router.add_route(route.method, path, handler)
                if route.path == "/":
                    app.router.add_route(route.method, "/func", handler)
            else:
                handler = signed(route.handler, public=route.public)
                app.router.add_route(route.method, route.path, handler)


def build_apps(state: EmulatorState) -> dict[str, web.Application]:
    manager = web.Application(middlewares=_middlewares("manager"), client_max_size=CLIENT_MAX_SIZE)
    manager[STATE] = state
    manager.router.add_routes(hooks.hook_routes())
    _add_api_routes(manager, state.profile, webserver=False)

    webserver = web.Application(
        middlewares=_middlewares("webserver"), client_max_size=CLIENT_MAX_SIZE
    )
    webserver[STATE] = state
    webserver.router.add_routes(webserver_routes())
    _add_api_routes(webserver, state.profile, webserver=True)

    store = web.Application(middlewares=_middlewares("storage"))
    store[STATE] = state
    store.router.add_routes(storage.storage_routes())
    return {"manager": manager, "webserver": webserver, "storage": store}


# --- start-up ---


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: temp file in the same dir, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ready-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def build_state(args: argparse.Namespace, state_dir: Path) -> EmulatorState:
    keys_dir = state_dir / "keys"
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in ("sessions", "vfolders", "upload-staging"):
        shutil.rmtree(state_dir / stale, ignore_errors=True)
    (state_dir / "sessions").mkdir()
    ensure_host_key(keys_dir / "ssh_host_ed25519_key")
    state = EmulatorState(
        options=Options(
            host=args.host,
            server_version=args.server_version,
            sshd=args.sshd,
            allow_dot_ssh_folder=args.allow_dot_ssh_folder,
            state_dir=state_dir,
            login_block_after=args.login_block_after,
            kubernetes=args.kubernetes,
            max_concurrent_logins=args.max_concurrent_logins,
        ),
        profile=PROFILES[args.server_version],
        creds=Credentials.load_or_create(keys_dir / "credentials.json"),
        ssh_keypair=load_or_create_keypair(keys_dir / "keypair_rsa"),
    )
    namespace = home_namespace_available(state_dir)
    if args.sshd == "dropbear" and not namespace:
        raise SystemExit(
            "--sshd dropbear needs root and mount namespaces (dropbear has no AuthorizedKeysFile)"
        )
    if args.totp:
        state.totp_secret = new_secret()
    state.sessions = sessions.SessionManager(state, namespace=namespace)
    state.folders = FolderStore(state=state, root=state_dir / "vfolders")
    state.faults = FaultTable()
    return state


async def run(args: argparse.Namespace) -> int:
    own_state_dir = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="bai-emulator-")) if own_state_dir else args.state_dir
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = await asyncio.to_thread(build_state, args, state_dir)
    runners: list[web.AppRunner] = []
    try:
        apps = build_apps(state)
        urls: dict[str, str] = {}
        for offset, (name, app) in enumerate(apps.items()):
            sock = _bind(args.host, args.port + offset if args.port else 0)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
            urls[name] = _url(args.host, sock)
        state.manager_url = urls["manager"]
        state.webserver_url = urls["webserver"]
        state.storage_url = urls["storage"]
        names = args.session or [DEFAULT_SESSION]
        started = await asyncio.gather(*(state.sessions.create(n) for n in names))
        info = {
            "manager_url": state.manager_url,
            "webserver_url": state.webserver_url,
            "storage_url": state.storage_url,
            "access_key": state.creds.access_key,
            "secret_key": state.creds.secret_key,
            "username": state.creds.username,
            "password": state.creds.password,
            "sessions": [s.name for s in started],
            "ssh_user": state.ssh_user,
            "sshd": {s.name: s.sshd_addr for s in started},
            "server_version": state.profile.name,
            "manager_version": state.profile.manager_version,
            "api_version": state.profile.api_version,
            "sshd_impl": state.options.sshd,
            "kubernetes": state.options.kubernetes,
            **({"totp_secret": state.totp_secret} if state.totp_secret else {}),
            "session_home_isolated": state.sessions.namespace,
            "state_dir": str(state_dir),
            "pid": os.getpid(),
        }
        if args.ready_file:
            write_ready_file(args.ready_file, info)
        print(
            f"emulator {state.profile.name} ready: manager {state.manager_url} "
            f"webserver {state.webserver_url} storage {state.storage_url}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print("emulator stopping", file=sys.stderr, flush=True)
        return 0
    except SshdStartError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    finally:
        await state.sessions.stop_all()
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if own_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    return asyncio.run(run(args))
