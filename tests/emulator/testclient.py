"""A tiny Backend.AI client for the emulator's own tests, written from the spec (§2, §3).

It deliberately shares no code with the emulator's verifier (auth.py) so the
tests check one implementation against another.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

DEFAULT_VERSION = "v7.20230615"


def sign(
    *,
    secret_key: str,
    access_key: str,
    method: str,
    rel_url: str,
    date: datetime,
    hostname: str,
    content_type: str,
    api_version: str,
) -> dict[str, str]:
    """The Date and Authorization headers of spec §3.1 (date.isoformat() as the Date)."""
    date_str = date.isoformat()
    body_hash = hashlib.sha256(b"").hexdigest()
    sts = (
        f"{method.upper()}\n{rel_url}\n{date_str}\nhost:{hostname}\n"
        f"content-type:{content_type.lower()}\nx-backendai-version:{api_version}\n{body_hash}"
    )
    k1 = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hashlib.sha256).digest()
    k2 = hmac.new(k1, hostname.encode(), hashlib.sha256).digest()
    sig = hmac.new(k2, sts.encode(), hashlib.sha256).hexdigest()
    return {
        "Date": date_str,
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{sig}",
    }


class BaiClient:
    """API mode (signed, against manager_url) or session mode (against webserver_url)."""

    def __init__(
        self,
        endpoint: str,
        *,
        mode: str = "api",
        access_key: str = "",
        secret_key: str = "",
        api_version: str = DEFAULT_VERSION,
        session_id: str | None = None,
        use_cookie: bool = False,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.mode = mode
        self.access_key = access_key
        self.secret_key = secret_key
        self.api_version = api_version
        self.session_id = session_id
        self.use_cookie = use_cookie
        self.http = requests.Session()

    def login(self, username: str, password: str) -> requests.Response:
        resp = self.http.post(
            self.endpoint + "/server/login",
            json={"username": username, "password": password},
            timeout=30,
        )
        if resp.ok and resp.json().get("authenticated"):
            self.session_id = resp.headers["X-BackendAI-SessionID"]
            if not self.use_cookie:
                self.http.cookies.clear()
        return resp

    def url_and_headers(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content_type: str = "text/plain",
        date: datetime | None = None,
        secret_key: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        rel = path + ("?" + urlencode(params, doseq=True) if params else "")
        headers = {"X-BackendAI-Version": self.api_version, "X-BackendAI-Domain": "default"}
        if self.mode == "session":
            if self.session_id and not self.use_cookie:
                headers["X-BackendAI-SessionID"] = self.session_id
            return self.endpoint + "/func" + rel, headers
        hostname = urlsplit(self.endpoint).netloc
        headers.update(
            sign(
                secret_key=self.secret_key if secret_key is None else secret_key,
                access_key=self.access_key,
                method=method,
                rel_url=rel,
                date=date or datetime.now(UTC),
                hostname=hostname,
                content_type=content_type,
                api_version=self.api_version,
            )
        )
        return self.endpoint + rel, headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        date: datetime | None = None,
        secret_key: str | None = None,
        timeout: float = 30,
    ) -> requests.Response:
        import json

        content_type = "application/json" if json_body is not None else "text/plain"
        url, headers = self.url_and_headers(
            method, path, params=params, content_type=content_type, date=date, secret_key=secret_key
        )
        headers["Content-Type"] = content_type
        data = json.dumps(json_body).encode() if json_body is not None else b""
        return self.http.request(method, url, data=data, headers=headers, timeout=timeout)
