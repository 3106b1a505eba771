"""GET|PATCH|POST /auth/ssh-keypair (spec §7.8) and the auth-check endpoints (§3.5).

Changing the keypair's SSH key changes what sessions created afterwards get;
running sessions keep theirs, as on a real cluster.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

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
    if state.profile.validate_ssh_keypair:
        _validate_pair(pubkey, privkey, openssh_ok=state.profile.openssh_private_key_ok)
    state.ssh_keypair = SshKeypair(
        private_pem=_with_newline(privkey), public_line=_with_newline(pubkey)
    )
    return json_response(
        {
            "ssh_public_key": state.ssh_keypair.public_line,
            "ssh_private_key": state.ssh_keypair.private_pem,
        }
    )


# The key types the manager's match statement knows; DSA and others are refused.
_PAIR_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)


def _validate_pair(pubkey: str, privkey: str, *, openssh_ok: bool) -> None:
    """The manager's keypair check (25.6.0+): a PEM private key (OpenSSH format from
    26.4.4) and an OpenSSH public key line, both parsed as given, of one RSA, ECDSA or
    Ed25519 pair. Raises 400 otherwise (spec §14)."""
    data = privkey.encode()
    key: Any = None
    with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
        key = serialization.load_pem_private_key(data, password=None)
    if key is None and openssh_ok:
        with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
            key = serialization.load_ssh_private_key(data, password=None)
    if key is None:
        raise invalid_params(
            "Invalid SSH keypair: the private key is not a valid unencrypted "
            + ("PEM or OpenSSH" if openssh_ok else "PEM")
            + " private key"
        )
    try:
        # load_ssh_public_key, like the manager: no leading blanks, no other format.
        public: Any = serialization.load_ssh_public_key(pubkey.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise invalid_params("Invalid SSH keypair: invalid public key format") from exc
    if not isinstance(key, _PAIR_TYPES):
        raise invalid_params("Invalid SSH keypair: unsupported pair of keys")
    openssh = (serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if key.public_key().public_bytes(*openssh) != public.public_bytes(*openssh):
        raise invalid_params("Invalid SSH keypair: the public key does not match the private key")


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
