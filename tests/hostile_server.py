"""A hostile Backend.AI look-alike: what an attacker's (or a broken proxy's) server can send.

An aiohttp app on 127.0.0.1 in a background thread, with one mode at a time:

* ``redirect``   every API request gets a 302 to `second` (another listener that
  records whatever reaches it: it must see nothing);
* ``slowloris``  a 200 whose JSON body trickles one byte every 0.2 s, for minutes;
* ``huge``       a 200 JSON body of up to 3 GiB, streamed without Content-Length;
* ``escape``     errors whose title/msg (and Location) carry `payload` (ESC, BEL, OSC...);
* ``ws-close``   the tunnel upgrade succeeds and the server closes with reason `payload`;
* ``bad-gateway-redirect``  the tunnel answers 502 and ``/func/session/X`` redirects to
  `second` (the relay's 502 explanation must not follow it).

The probe (``GET /`` and ``GET /func/``) always answers like a real server, so the
client reaches the request under test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

VERSION = {"version": "v8.20240915", "manager": "24.09.14"}


@dataclass
class Hostile:
    mode: str = "escape"
    payload: str = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J"
    status: int = 404
    url: str = ""
    second: str = ""
    second_hits: list[dict[str, Any]] = field(default_factory=list)
    sent_bytes: int = 0
    requests: list[str] = field(default_factory=list)

    # -------------------------------------------------------------- handlers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if request.path in ("/", "/func/", "/func") and request.method == "GET":
            return web.json_response(VERSION)
        if "/tcpproxy" in request.path:
            return await self._tunnel(request)
        if self.mode in ("redirect", "bad-gateway-redirect"):
            raise web.HTTPFound(self.second + request.path_qs)
        if self.mode == "slowloris":
            return await self._trickle(request)
        if self.mode == "huge":
            return await self._huge(request)
        if self.mode == "escape-redirect":
            return web.Response(status=302, headers={"Location": "http://x/" + self.payload})
        body = {
            "type": "https://api.backend.ai/probs/x",
            "title": self.payload,
            "msg": self.payload,
        }
        return web.Response(
            status=self.status, text=json.dumps(body), content_type="application/problem+json"
        )

    async def _tunnel(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "bad-gateway-redirect":
            return web.Response(status=502, text="Bad Gateway")
        if self.mode == "ws-close":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=self.payload.encode())
            return ws
        body = {"title": self.payload, "msg": self.payload}
        return web.Response(
            status=self.status, text=json.dumps(body), content_type="application/json"
        )

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await resp.write(b"{")
            for _ in range(3000):
                await asyncio.sleep(0.2)
                await resp.write(b" ")
                self.sent_bytes += 1
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b'"' + b"x" * (1024 * 1024 - 3) + b'",'
        try:
            await resp.write(b"[")
            while self.sent_bytes < 3 * 1024**3:
                await resp.write(chunk)
                self.sent_bytes += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def record(self, request: web.Request) -> web.Response:
        self.second_hits.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers)}
        )
        return web.json_response({"stolen": True})


@contextmanager
def hostile_server(mode: str = "escape", **kwargs: Any) -> Iterator[Hostile]:
    """Run a Hostile server (and its second listener) until the block ends."""
    state = Hostile(mode=mode, **kwargs)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runners: list[web.AppRunner] = []

    async def start() -> None:
        main = web.Application()
        main.router.add_route("*", "/{tail:.*}", state.handle)
        second = web.Application()
        second.router.add_route("*", "/{tail:.*}", state.record)
        for app, attr in ((main, "url"), (second, "second")):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            setattr(state, attr, f"http://127.0.0.1:{port}")
            runners.append(runner)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the hostile server did not start")
    try:
        yield state
    finally:

        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
