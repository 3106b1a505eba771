"""Test hooks under /_emulator/ on the manager listener (not part of the real API; no auth).

- POST   /_emulator/sessions {"name": N, "apps"?: ["echo"], "status"?: "PREPARING",
         "ready_after"?: S} -> {"name", "id", "sshd", "status"} (names may repeat)
- GET    /_emulator/sessions -> [{"name", "id", "sshd", "home", "status"}]
- DELETE /_emulator/sessions/{name or id} -> {"name", "terminated": true}
- POST   /_emulator/vfolders/{name}/files {"path", "content_b64", "mode"?}
         -> {"folder", "id", "path", "size"}
- POST   /_emulator/faults {"kind", "session"?, "after_bytes"?, "path_prefix"?, "count"?,
         "seconds"?, "close_code"?} -> the armed fault;  GET lists;  DELETE clears all
- GET    /_emulator/requests -> the request log;  DELETE clears it
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from aiohttp import web

from tests.emulator.problems import ProblemError, invalid_params
from tests.emulator.sshd import SshdStartError
from tests.emulator.state import get_state
from tests.emulator.vfolders import resolve


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise invalid_params("Malformed JSON body") from exc
    if not isinstance(body, dict):
        raise invalid_params("The body must be a JSON object")
    return body


async def create_session(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    body = await _body(request)
    name = body.get("name")
    apps = body.get("apps") or []
    status = body.get("status", "RUNNING")
    ready_after = body.get("ready_after")
    if not isinstance(name, str) or not isinstance(apps, list) or not isinstance(status, str):
        raise invalid_params("name (str) is required; apps must be a list; status a string")
    if ready_after is not None and not isinstance(ready_after, (int, float)):
        raise invalid_params("ready_after must be a number of seconds")
    try:
        sess = await state.sessions.create(
            name,
            extra_apps=[str(a) for a in apps],
            status=status,
            ready_after=float(ready_after) if ready_after is not None else None,
        )
    except ValueError as exc:
        raise invalid_params(str(exc)) from exc
    except SshdStartError as exc:
        raise ProblemError(500, "internal-server-error", "sshd failed", msg=str(exc)) from exc
    return web.json_response(
        {"name": sess.name, "id": sess.id, "sshd": sess.sshd_addr, "status": sess.status},
        status=201,
    )


async def list_sessions(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    return web.json_response(
        [
            {
                "name": s.name,
                "id": s.id,
                "sshd": s.sshd_addr,
                "home": str(s.home),
                "status": s.status,
            }
            for s in state.sessions.sessions.values()
        ]
    )


async def terminate_session(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    sess = await state.sessions.terminate(request.match_info["name"])
    return web.json_response({"name": sess.name, "terminated": True})


async def seed_file(request: web.Request) -> web.StreamResponse:
    """Write a file into a folder, creating the folder (without the name rules) if needed."""
    state = get_state(request)
    body = await _body(request)
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise invalid_params("path is required")
    try:
        content = base64.b64decode(str(body.get("content_b64", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_params("content_b64 is not base64") from exc
    name = request.match_info["name"]
    folder = state.folders.get_by_name(name) or state.folders.create(name)
    target = resolve(folder, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = int(str(body.get("mode", "644")), 8)
    tmp = target.with_name(target.name + ".seed-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, target)
    return web.json_response(
        {"folder": folder.name, "id": folder.id, "path": path, "size": len(content)}, status=201
    )


async def add_fault(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    try:
        fault = state.faults.add(await _body(request))
    except (ValueError, TypeError) as exc:
        raise invalid_params(str(exc)) from exc
    return web.json_response(fault.as_json(), status=201)


async def list_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response(get_state(request).faults.list())


async def clear_faults(request: web.Request) -> web.StreamResponse:
    get_state(request).faults.clear()
    return web.json_response({"cleared": True})


async def get_requests(request: web.Request) -> web.StreamResponse:
    return web.json_response(get_state(request).request_log)


async def clear_requests(request: web.Request) -> web.StreamResponse:
    get_state(request).request_log.clear()
    return web.json_response({"cleared": True})


def hook_routes() -> list[web.RouteDef]:
    return [
        web.post("/_emulator/sessions", create_session),
        web.get("/_emulator/sessions", list_sessions, allow_head=False),
        web.delete("/_emulator/sessions/{name}", terminate_session),
        web.post("/_emulator/vfolders/{name}/files", seed_file),
        web.post("/_emulator/faults", add_fault),
        web.get("/_emulator/faults", list_faults, allow_head=False),
        web.delete("/_emulator/faults", clear_faults),
        web.get("/_emulator/requests", get_requests, allow_head=False),
        web.delete("/_emulator/requests", clear_requests),
    ]
