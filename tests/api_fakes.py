"""A fake HTTP transport for `requests`: an adapter that hands each request to a function."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[requests.PreparedRequest], Reply]


class FakeAdapter(BaseAdapter):
    """Answers every request with `handler(request)`; records the requests it saw."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        reply = self.handler(request)
        body = reply.body
        headers = dict(reply.headers)
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        resp = requests.Response()
        resp.status_code = reply.status
        resp.headers = CaseInsensitiveDict(headers)
        resp._content = body
        resp.url = request.url or ""
        resp.request = request
        resp.reason = {200: "OK", 201: "Created", 204: "No Content"}.get(reply.status, "Error")
        import io

        resp.raw = io.BytesIO(body)
        return resp

    def close(self) -> None:
        pass


def fake_session(handler: Handler) -> tuple[requests.Session, FakeAdapter]:
    session = requests.Session()
    adapter = FakeAdapter(handler)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


def problem(status: int, slug: str, title: str, msg: str | None = None, **extra: Any) -> Reply:
    body: dict[str, Any] = {"type": f"https://api.backend.ai/probs/{slug}", "title": title}
    if msg is not None:
        body["msg"] = msg
    body.update(extra)
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/problem+json"})
