"""Keypair HMAC signing (spec §3), the API-mode and session-mode auth wrappers, login/logout.

The verifier follows the manager's order exactly: API version header, then the
Date window (400), then the Authorization header (400 malformed / 401 unknown key
or mismatch).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from tests.emulator.problems import (
    PROBS,
    ProblemError,
    auth_failed,
    bad_gateway,
    invalid_auth_params,
    web_unauthorized,
)
from tests.emulator.routes import Handler, json_response
from tests.emulator.state import (
    VIA_WEBSERVER,
    WEBSERVER_OWN_ERROR,
    EmulatorState,
    WebSession,
    get_state,
)
from tests.emulator.totp import totp_matches

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DATE_WINDOW = timedelta(minutes=15)
COOKIE_NAME = "AIOHTTP_SESSION"
SESSION_HEADER = "X-BackendAI-SessionID"
COOKIE_MAX_AGE = 604800
LOGIN_BLOCK_TIME = 1200.0


# --- the signature itself (pure functions, unit-tested against spec §3.4) ---


def parse_date(value: str) -> datetime | None:
    """Parse a Date header leniently (ISO 8601 or RFC 1123); naive values are UTC."""
    value = value.strip()
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def string_to_sign(
    method: str,
    rel_url: str,
    date_header: str,
    host: str,
    content_type: str,
    api_version: str,
    *,
    version_label: str = "backendai",
) -> str:
    """The seven newline-joined fields of spec §3.1 step 5."""
    return "\n".join(
        [
            method.upper(),
            rel_url,
            date_header,
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"x-{version_label}-version:{api_version}",
            EMPTY_SHA256,
        ]
    )


def compute_signature(
    secret_key: str,
    *,
    method: str,
    rel_url: str,
    date_header: str,
    date: datetime,
    host: str,
    content_type: str,
    api_version: str,
    version_label: str = "backendai",
) -> str:
    """hex HMAC-SHA256 signature with the date- and host-derived key (spec §3.1 step 6)."""
    k1 = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hashlib.sha256).digest()
    k2 = hmac.new(k1, host.encode(), hashlib.sha256).digest()
    sts = string_to_sign(
        method, rel_url, date_header, host, content_type, api_version, version_label=version_label
    )
    return hmac.new(k2, sts.encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> tuple[str, str, str]:
    """Split `BackendAI signMethod=HMAC-SHA256, credential=AK:SIG` into (hash, access key, sig).

    Raises ProblemError 400 invalid-auth-params when malformed.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme not in ("BackendAI", "Sorna") or not rest:
        raise invalid_auth_params("Malformed authorization header")
    params: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise invalid_auth_params("Malformed authorization header")
        params[key] = val
    sign_method = params.get("signMethod", "")
    credential = params.get("credential", "")
    access_key, sep, signature = credential.partition(":")
    m = re.fullmatch(r"HMAC-(\w+)", sign_method)
    if not m or not sep or not access_key or not signature:
        raise invalid_auth_params("Malformed authorization header")
    return m.group(1).lower(), access_key, signature


def verify_signed_request(
    *,
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    host: str,
    content_type: str,
    secrets_by_access_key: Mapping[str, str],
    now: datetime | None = None,
) -> str:
    """Verify one API-mode request as the manager does (spec §3.3); return the access key.

    Raises ProblemError: 400 invalid-auth-params (Date missing/outside ±15 min,
    malformed Authorization, no API version header), 401 auth-failed ("Unauthorized
    access" without an Authorization header, "Access key not found", "Signature mismatch").
    """
    now = now or datetime.now(UTC)
    date_header = (
        headers.get("Date") or headers.get("X-BackendAI-Date") or headers.get("X-Sorna-Date")
    )
    parsed = parse_date(date_header) if date_header else None
    if parsed is None or not (now - DATE_WINDOW < parsed < now + DATE_WINDOW):
        raise invalid_auth_params("Date/time sync error")
    assert date_header is not None
    authorization = headers.get("Authorization")
    if not authorization:
        raise auth_failed("Unauthorized access")
    hash_name, access_key, signature = parse_authorization(authorization)
    secret = secrets_by_access_key.get(access_key)
    if secret is None:
        raise auth_failed("Access key not found")
    if hash_name != "sha256":
        raise invalid_auth_params("Unsupported signature hash")
    if headers.get("X-BackendAI-Version"):
        label, version = "backendai", headers["X-BackendAI-Version"]
    elif headers.get("X-Sorna-Version"):
        label, version = "sorna", headers["X-Sorna-Version"]
    else:
        # sign_request refuses to sign without a version (it never signs an empty one).
        raise invalid_auth_params("API version missing in request headers")
    expected = compute_signature(
        secret,
        method=method,
        rel_url=raw_path,
        date_header=date_header,
        date=parsed,
        host=host,
        content_type=content_type,
        api_version=version,
        version_label=label,
    )
    if not hmac.compare_digest(expected, signature):
        raise auth_failed("Signature mismatch")
    return access_key


# --- wrappers applied per listener ---


def check_api_version(state: EmulatorState, request: web.Request) -> None:
    """The manager's api_middleware: an unknown X-BackendAI-Version is a 400."""
    version = request.headers.get("X-BackendAI-Version") or request.headers.get("X-Sorna-Version")
    if version and version not in state.profile.valid_api_versions:
        raise ProblemError(
            400, "generic-bad-request", "Bad request.", msg="Unsupported API version."
        )


def signed(handler: Handler, *, public: bool) -> Handler:
    """Manager listener: verify the HMAC signature before calling `handler`."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        state = get_state(request)
        check_api_version(state, request)
        if not public:
            request["access_key"] = verify_signed_request(
                method=request.method,
                raw_path=request.raw_path,
                headers=request.headers,
                host=request.host,
                content_type=request.content_type,
                secrets_by_access_key={state.creds.access_key: state.creds.secret_key},
            )
        return await handler(request)

    return wrapper


def _web_session(state: EmulatorState, request: web.Request) -> WebSession | None:
    key = request.headers.get(SESSION_HEADER) or request.cookies.get(COOKIE_NAME)
    if not key:
        return None
    return state.web_sessions.get(key)


def web_session_auth(handler: Handler, *, public: bool, websocket: bool) -> Handler:
    """Webserver listener: require a login session, then run the manager handler.

    For websocket routes any manager-side rejection before the upgrade becomes
    the webserver's 502 (spec §2.3).
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        state = get_state(request)
        if not public:
            session = _web_session(state, request)
            if session is None:
                request[WEBSERVER_OWN_ERROR] = True
                raise web_unauthorized()
            request["access_key"] = session.access_key
        request[VIA_WEBSERVER] = True
        try:
            check_api_version(state, request)
            return await handler(request)
        except ProblemError as exc:
            if websocket:
                # The client library turns the failed handshake into BackendClientError;
                # the webserver's 502 says nothing of the manager's status (web/proxy.py).
                request[WEBSERVER_OWN_ERROR] = True
                raise bad_gateway() from exc
            raise

    return wrapper


# --- webserver /server/* routes ---


async def login(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    if _web_session(state, request) is not None:
        raise ProblemError(400, "generic-bad-request", "You have already logged in.")
    params = await _login_body(request)
    username = params.get("username")
    password = params.get("password")
    # The webserver's own 400s: the message is the title, no msg (web/server.py).
    if not username:
        raise ProblemError(400, "invalid-api-params", "You must provide the username field.")
    if not password:
        raise ProblemError(400, "invalid-api-params", "You must provide the password field.")
    now = time.time()
    recent = [t for t in state.failed_logins.get(str(username), []) if now - t < LOGIN_BLOCK_TIME]
    block_after = state.options.login_block_after
    if block_after and len(recent) >= block_after:
        raise ProblemError(429, "too-many-requests", "Too many failed login attempts")
    creds = state.creds
    otp_given = params.get("otp")
    if state.profile.totp_supported and otp_given is not None and not isinstance(otp_given, str):
        # The manager's LoginRequest (`otp: str | None`, pydantic: a number is no string)
        # refuses it; the webserver passes the 400 on.
        return json_response(
            {
                "authenticated": False,
                "data": {
                    "type": PROBS + "invalid-api-params",
                    "title": "Missing or invalid API parameters.",
                    "details": "otp: Input should be a valid string",
                },
            },
            status=400,
        )
    if not (
        hmac.compare_digest(str(username), creds.username)
        and hmac.compare_digest(str(password), creds.password)
    ):
        state.failed_logins[str(username)] = [*recent, now]
        return _login_refused(state, "User credential mismatch.")
    if state.totp_secret is not None:
        otp = params.get("otp")
        if not otp:
            # The TOTP plugin's hook: not an error status, a typed refusal (spec §14).
            return json_response(
                {
                    "authenticated": False,
                    "data": {
                        "type": PROBS + "require-totp-authentication",
                        "title": "Two-Factor Authentication needed.",
                        "details": "You must authenticate using Two-Factor Authentication.",
                    },
                }
            )
        if not totp_matches(state.totp_secret, str(otp), now):
            state.failed_logins[str(username)] = [*recent, now]
            return _login_refused(state, "Invalid TOTP code.")
    cap = state.options.max_concurrent_logins
    if cap:
        mine = sorted(
            (s for s in state.web_sessions.values() if s.access_key == creds.access_key),
            key=lambda s: s.created,
        )
        if len(mine) >= cap:
            if params.get("force") is not True:
                return json_response(
                    {
                        "authenticated": False,
                        "data": {
                            # The manager's TooManyConcurrentLoginSessions, passed on.
                            "type": PROBS + "active-login-session-exists",
                            "title": "Too many concurrent login sessions for this user.",
                            "details": None,
                        },
                    },
                    status=409,
                )
            for old in mine[: len(mine) - cap + 1]:
                state.web_sessions.pop(old.key, None)
    state.failed_logins.pop(str(username), None)
    key = secrets.token_hex(16)
    state.web_sessions[key] = WebSession(key=key, access_key=creds.access_key, created=now)
    resp = json_response(
        {
            "authenticated": True,
            "data": {"access_key": creds.access_key, "role": creds.role, "status": "active"},
        }
    )
    expires = time.strftime("%a, %d-%b-%Y %H:%M:%S GMT", time.gmtime(now + COOKIE_MAX_AGE))
    resp.set_cookie(
        COOKIE_NAME, key, expires=expires, httponly=True, max_age=COOKIE_MAX_AGE, path="/"
    )
    resp.headers[SESSION_HEADER] = key
    return resp


async def _login_body(request: web.Request) -> dict[str, Any]:
    """The credentials as the webserver reads them: the JSON body only, never the query.

    A body that is not a JSON object counts as empty (the webserver then asks for the
    username, 400).
    """
    raw = await request.read() if request.can_read_body else b""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _login_refused(state: EmulatorState, details: str) -> web.Response:
    """A failed login: 200 up to 26.3.x, the manager's 401 from 26.4.0 (spec §14)."""
    return json_response(
        {
            "authenticated": False,
            "data": {
                "type": PROBS + "auth-failed",
                "title": "Credential/signature mismatch.",
                "details": details,
            },
        },
        status=401 if state.profile.login_failure_401 else 200,
    )


async def logout(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    session = _web_session(state, request)
    if session is not None:
        state.web_sessions.pop(session.key, None)
    resp = web.Response(status=200 if state.profile.logout_200 else 201)
    resp.del_cookie(COOKIE_NAME, path="/")
    return resp


async def login_check(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    session = _web_session(state, request)
    if session is None:
        return json_response({"authenticated": False, "data": None, "session_id": None})
    creds = state.creds
    return json_response(
        {
            "authenticated": True,
            "data": {"access_key": creds.access_key, "role": creds.role, "status": "active"},
            "session_id": session.key,
        }
    )


def webserver_routes() -> list[web.RouteDef]:
    return [
        web.post("/server/login", login),
        web.post("/server/logout", logout),
        web.post("/server/login-check", login_check),
    ]
