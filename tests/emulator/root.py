"""`GET /` (the version probe, public) and `GET /ping`."""

from __future__ import annotations

from aiohttp import web

from tests.emulator.routes import ApiRoute, json_response
from tests.emulator.state import get_state
from tests.emulator.versions import VersionProfile


async def hello(request: web.Request) -> web.StreamResponse:
    profile = get_state(request).profile
    return json_response({"version": profile.api_version, "manager": profile.manager_version})


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


def api_routes(profile: VersionProfile) -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/", hello, public=True),
        ApiRoute("GET", "/ping", ping, public=True),
    ]
