"""Error bodies in the server's problem+json shape (spec §9).

Handlers raise :class:`ProblemError`; the error middleware turns it into the
response. Nothing here knows about listeners or auth.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBS = "https://api.backend.ai/probs/"
PROBLEM_JSON = "application/problem+json"


def problem_body(
    slug: str,
    title: str,
    *,
    msg: str | None = None,
    data: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON object of a problem response."""
    body: dict[str, Any] = {"type": PROBS + slug, "title": title}
    if msg is not None:
        body["msg"] = msg
    if data is not None:
        body["data"] = data
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    slug: str,
    title: str,
    *,
    msg: str | None = None,
    data: Any = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A problem+json response."""
    body = problem_body(slug, title, msg=msg, data=data, extra=extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


class ProblemError(Exception):
    """Raised by handlers; rendered as a problem+json response by the error middleware."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        *,
        msg: str | None = None,
        data: Any = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {slug}: {title}")
        self.status = status
        self.slug = slug
        self.title = title
        self.msg = msg
        self.data = data
        self.extra = extra
        self.headers = headers

    def response(self) -> web.Response:
        return problem_response(
            self.status,
            self.slug,
            self.title,
            msg=self.msg,
            data=self.data,
            extra=self.extra,
            headers=self.headers,
        )


def invalid_params(msg: str, data: Any = None) -> ProblemError:
    """400 invalid-api-params, the validation error of every handler."""
    return ProblemError(
        400, "invalid-api-params", "Missing or invalid API parameters.", msg=msg, data=data
    )


def not_found(title: str, *, msg: str | None = None, data: Any = None) -> ProblemError:
    """404 object-not-found with the given title ("No such session." ...)."""
    return ProblemError(404, "object-not-found", title, msg=msg, data=data)


def auth_failed(msg: str | None) -> ProblemError:
    """401 auth-failed as the manager sends it for keypair auth."""
    return ProblemError(401, "auth-failed", "Credential/signature mismatch.", msg=msg)


def invalid_auth_params(msg: str) -> ProblemError:
    """400 invalid-auth-params (bad Date, malformed Authorization)."""
    return ProblemError(
        400, "invalid-auth-params", "Missing or invalid authorization parameters.", msg=msg
    )


def web_unauthorized() -> ProblemError:
    """401 from the webserver when the caller has no valid login session."""
    return ProblemError(401, "auth-failed", "Unauthorized access")


def bad_gateway() -> ProblemError:
    """502 from the webserver when the manager rejected a proxied websocket: type and
    title only, nothing of the manager's answer (web/proxy.py)."""
    return ProblemError(502, "bad-gateway", "The proxy target server is inaccessible.")


def internal_error(msg: str | None = None) -> ProblemError:
    """500 internal-server-error."""
    return ProblemError(500, "internal-server-error", "Something has gone wrong.", msg=msg)
