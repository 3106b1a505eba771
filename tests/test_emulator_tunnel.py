"""The emulator's sessions end to end: a real sshd reached directly and through the
tcpproxy websocket (spec §6), byte-exact relaying, close codes and injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.emulator.testclient import BaiClient
from tests.emulator_fixture import HERMETIC_SSH, Emulator

# A throw-away ProxyCommand relay (stdio <-> websocket) so the test needs nothing from sshkit.
RELAY = r"""
import json, os, sys, threading
from websockets.sync.client import connect
url = os.environ["EMU_WS_URL"]
headers = json.loads(os.environ["EMU_WS_HEADERS"])
with connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
    def up():
        while True:
            data = os.read(0, 262144)
            if not data:
                break
            ws.send(data)
        ws.close()
    threading.Thread(target=up, daemon=True).start()
    try:
        for msg in ws:
            os.write(1, msg)
    except Exception:
        pass
"""


def ws_target(
    emu: Emulator, session: str, app: str = "sshd", *, mode: str = "api"
) -> tuple[str, dict[str, str]]:
    if mode == "api":
        client = emu.api_client()
    else:
        client = BaiClient(emu.webserver_url, mode="session")
        assert client.login(emu.username, emu.password).json()["authenticated"]
    url, headers = client.url_and_headers(
        "GET",
        f"/stream/session/{session}/tcpproxy",
        params={"app": app},
        content_type="application/octet-stream",
    )
    return "ws" + url[len("http") :], headers


def fetch_key(emu: Emulator, session: str, dest: Path) -> Path:
    resp = emu.download_key(session, dest)
    assert resp.status_code == 200, resp.text
    return dest


def test_direct_ssh_with_id_container(emulator: Emulator, tmp_path: Path) -> None:
    key = fetch_key(emulator, emulator.session, tmp_path / "id_container")
    host, port = emulator.sshd_addr()
    out = subprocess.run(
        [
            "ssh",
            *HERMETIC_SSH,
            "-i",
            str(key),
            "-p",
            str(port),
            f"{emulator.ssh_user}@{host}",
            "echo ok",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"


@pytest.mark.parametrize("mode", ["api", "session"])
def test_ssh_through_tcpproxy(emulator: Emulator, tmp_path: Path, mode: str) -> None:
    key = fetch_key(emulator, emulator.session, tmp_path / "id_container")
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    url, headers = ws_target(emulator, emulator.session, mode=mode)
    env = dict(os.environ, EMU_WS_URL=url, EMU_WS_HEADERS=json.dumps(headers))
    out = subprocess.run(
        [
            "ssh",
            *HERMETIC_SSH,
            "-o",
            f"ProxyCommand={sys.executable} {relay}",
            "-i",
            str(key),
            f"{emulator.ssh_user}@{emulator.session}",
            "test -f ~/id_container && cat ~/.ssh/authorized_keys",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ssh-rsa ")


async def _echo(url: str, headers: dict[str, str], payload: bytes, chunk: int) -> bytes:
    async with connect(url, additional_headers=headers, max_size=None, compression=None) as ws:

        async def sender() -> None:
            for i in range(0, len(payload), chunk):
                await ws.send(payload[i : i + chunk])

        task = asyncio.ensure_future(sender())
        got = bytearray()
        while len(got) < len(payload):
            msg = await ws.recv()
            assert isinstance(msg, bytes)
            got += msg
        await task
        return bytes(got)


def test_echo_64mib_byte_exact(emulator: Emulator) -> None:
    name = "echo-" + uuid.uuid4().hex[:8]
    emulator.hook("POST", "sessions", {"name": name, "apps": ["echo"]})
    try:
        apps = emulator.api_client().request("GET", f"/stream/session/{name}/apps").json()
        assert {"name": "echo", "protocol": "tcp", "ports": [7000]} in apps
        payload = os.urandom(64 * 1024 * 1024)
        url, headers = ws_target(emulator, name, "echo")
        got = asyncio.run(_echo(url, headers, payload, 1024 * 1024))
        assert len(got) == len(payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        emulator.hook("DELETE", f"sessions/{name}")


async def _close_code(
    url: str, headers: dict[str, str], send: bytes = b""
) -> tuple[int | None, int]:
    received = 0
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        if send:
            await ws.send(send)
        try:
            while True:
                msg = await ws.recv()
                received += len(msg)
        except ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), received
    raise AssertionError("unreachable")


def test_close_codes_and_faults(emulator: Emulator) -> None:
    name = "faults-" + uuid.uuid4().hex[:8]
    emulator.hook("POST", "sessions", {"name": name, "apps": ["echo"]})
    try:
        # refuse_sshd: upgrade, then 1013 TRY_AGAIN_LATER as when the target refuses.
        emulator.hook("POST", "faults", {"kind": "refuse_sshd", "session": name, "count": 1})
        code, _ = asyncio.run(_close_code(*ws_target(emulator, name)))
        assert code == 1013
        # ttyd is listed but has no TCP target here: refused the same way.
        code, _ = asyncio.run(_close_code(*ws_target(emulator, name, "ttyd")))
        assert code == 1013

        # drop_tcpproxy: exactly N bytes reach the client, then the connection is cut
        # without a close frame.
        emulator.hook(
            "POST",
            "faults",
            {"kind": "drop_tcpproxy", "session": name, "after_bytes": 100_000, "count": 1},
        )
        code, received = asyncio.run(
            _close_code(*ws_target(emulator, name, "echo"), send=os.urandom(300_000))
        )
        assert code is None
        assert received == 100_000

        # Terminating the session ends its tunnels with 1001 GOING_AWAY.
        async def terminate_while_open() -> int | None:
            url, headers = ws_target(emulator, name, "echo")
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(b"x")
                assert await ws.recv() == b"x"
                await asyncio.to_thread(emulator.hook, "DELETE", f"sessions/{name}")
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                return info.value.rcvd.code if info.value.rcvd else None

        assert asyncio.run(terminate_while_open()) == 1001
    finally:
        emulator.hook("DELETE", "faults")
        if name in {s["name"] for s in emulator.hook("GET", "sessions")}:
            emulator.hook("DELETE", f"sessions/{name}")


def test_stall_handshake_fault(emulator: Emulator) -> None:
    emulator.hook("POST", "faults", {"kind": "stall_handshake", "count": 1, "seconds": 30})
    try:

        async def attempt() -> None:
            url, headers = ws_target(emulator, emulator.session)
            async with connect(url, additional_headers=headers, open_timeout=1.0):
                pass

        with pytest.raises(TimeoutError):
            asyncio.run(attempt())
    finally:
        emulator.hook("DELETE", "faults")


def test_rejected_upgrades(emulator: Emulator) -> None:
    async def status(url: str, headers: dict[str, str]) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        return info.value.response.status_code

    # Manager: plain problem+json statuses before the upgrade.
    assert asyncio.run(status(*ws_target(emulator, "no-such-session"))) == 404
    assert asyncio.run(status(*ws_target(emulator, emulator.session, "nope"))) == 404
    # Webserver: the manager's rejection becomes 502 bad-gateway (spec §2.3) ...
    assert asyncio.run(status(*ws_target(emulator, "no-such-session", mode="session"))) == 502
    # ... but not being logged in is the webserver's own 401.
    url, _ = ws_target(emulator, emulator.session, mode="session")
    assert asyncio.run(status(url, {})) == 401
