"""The route table shared by the manager (signed) and the webserver (`/func/...`) listeners.

Each feature module exposes ``api_routes() -> list[ApiRoute]``; app.py lists the
modules in ``API_ROUTE_PROVIDERS`` and mounts every route on both listeners, with
the right auth wrapper. Adding an API is one new module plus one line there.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulator.problems import invalid_params

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiRoute:
    """One manager API route, in its API-mode form (no `/func` prefix)."""

    method: str
    path: str
    handler: Handler
    # Public routes (GET /) skip the date, signature and login checks.
    public: bool = False
    # Websocket routes: the webserver answers 502 when the manager rejects them (spec §2.3).
    websocket: bool = False


def access_key_of(request: web.Request) -> str:
    """The authenticated caller's access key (set by the auth wrappers)."""
    return str(request["access_key"])


async def api_params(request: web.Request, *, query_only: bool = False) -> dict[str, Any]:
    """Parameters the way the manager's `check_api_params` reads them (spec §5.1).

    A non-empty body is parsed as JSON; without a body the query string is used
    (multi-valued keys become lists). Raises ProblemError 400 on malformed JSON.
    """
    if not query_only and request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                raise invalid_params("Malformed body") from exc
            if not isinstance(parsed, dict):
                raise invalid_params("Malformed body")
            return parsed
    out: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
