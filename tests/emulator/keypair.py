"""GET|PATCH|POST /auth/ssh-keypair (spec §7.8) and the auth-check endpoints (§3.5).

Changing the keypair's SSH key changes what sessions created afterwards get;
running sessions keep theirs, as on a real cluster.
"""

from __future__ import annotations

from aiohttp import web

from tests.emulator.keys import SshKeypair, generate_ssh_keypair
from tests.emulator.problems import invalid_params
from tests.emulator.routes import ApiRoute, api_params, json_response
from tests.emulator.state import get_state
from tests.emulator.versions import VersionProfile


async def get_ssh_keypair(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    return json_response({"ssh_public_key": state.ssh_keypair.public_line})


async def refresh_ssh_keypair(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    state.ssh_keypair = generate_ssh_keypair()
    return json_response(
        {
            "ssh_public_key": state.ssh_keypair.public_line,
            "ssh_private_key": state.ssh_keypair.private_pem,
        }
    )


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


async def upload_ssh_keypair(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    params = await api_params(request)
    pubkey = params.get("pubkey")
    privkey = params.get("privkey")
    if not isinstance(pubkey, str) or not pubkey.strip():
        raise invalid_params("Input validation error", data={"pubkey": "is required"})
    if not isinstance(privkey, str) or not privkey.strip():
        raise invalid_params("Input validation error", data={"privkey": "is required"})
    state.ssh_keypair = SshKeypair(
        private_pem=_with_newline(privkey), public_line=_with_newline(pubkey)
    )
    return json_response(
        {
            "ssh_public_key": state.ssh_keypair.public_line,
            "ssh_private_key": state.ssh_keypair.private_pem,
        }
    )


async def auth_test(request: web.Request) -> web.StreamResponse:
    params = await api_params(request)
    if "echo" not in params:
        raise invalid_params("Input validation error", data={"echo": "is required"})
    return json_response({"authorized": "yes", "echo": params["echo"]})


async def auth_role(request: web.Request) -> web.StreamResponse:
    role = get_state(request).creds.role
    return json_response(
        {
            "global_role": "superadmin" if role == "superadmin" else "user",
            "domain_role": "admin" if role in ("admin", "superadmin") else "user",
            "group_role": "user",
        }
    )


def api_routes(profile: VersionProfile) -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/auth/ssh-keypair", get_ssh_keypair),
        ApiRoute("PATCH", "/auth/ssh-keypair", refresh_ssh_keypair),
        ApiRoute("POST", "/auth/ssh-keypair", upload_ssh_keypair),
        ApiRoute("GET", "/auth", auth_test),
        ApiRoute("POST", "/auth", auth_test),
        ApiRoute("GET", "/auth/test", auth_test),
        ApiRoute("POST", "/auth/test", auth_test),
        ApiRoute("GET", "/auth/role", auth_role),
    ]
