"""The Backend.AI HTTP client over `requests`, for both endpoint types (protocol spec §2-§9).

* session mode (webserver endpoint): `POST /server/login` returns a session id,
  sent back as `X-BackendAI-SessionID` (never as a cookie: cookies are refused
  so nothing can leak to another host); every other path is routed under `/func/`.
* API mode (manager endpoint): every request is HMAC-signed (`sshkit.api.auth`)
  with the clock passed in.

The transport is injectable: pass a `requests.Session` (tests mount an adapter
on it). Errors become `sshkit.errors` types carrying the server's title and msg.
"""

from __future__ import annotations

import json as jsonlib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import cookiejar
from types import TracebackType
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

from sshkit.api.auth import CONTENT_TYPE_EMPTY, CONTENT_TYPE_JSON, format_date, sign_headers
from sshkit.api.limits import (
    DEADLINE_ENV,
    MAX_JSON_BODY,
    BodyTooLargeError,
    Deadline,
    deadline_seconds,
    describe_size,
    mount_abortable,
    read_limited,
)
from sshkit.api.models import (
    AppInfo,
    FileEntry,
    FolderInfo,
    Identity,
    Keypair,
    LoginResult,
    MalformedAnswer,
    MatchEntry,
    ServerInfo,
    SessionInfo,
    parse_api_version,
    parse_manager_version,
)
from sshkit.api.problems import classify
from sshkit.api.tunnel import SESSION_ID_HEADER, USER_AGENT, ssl_context
from sshkit.errors import (
    ApiError,
    AuthError,
    LoginLimitError,
    NetworkError,
    NotFoundError,
    OtpRequiredError,
    RejectedError,
    ServerError,
    SshkitError,
    UnsafeDownloadError,
    UsageError,
)
from sshkit.settings import Connection

Clock = Callable[[], datetime]
T = TypeVar("T")
Params = Mapping[str, str | Sequence[str]]

DEFAULT_TIMEOUT = 30.0
TUS_CHUNK = 16 * 1024 * 1024

# How session downloads are asked for (protocol spec §5.5, corrected by §14):
# GET + JSON body up to 24.03.6, POST + JSON body from 24.03.7 (the only form 26.3.0-26.4.6
# take), POST + query only from 26.4.7.
GET_BODY, POST_BODY, POST_QUERY, GET_QUERY = "get-body", "post-body", "post-query", "get-query"
_DOWNLOAD_STYLES = (POST_QUERY, POST_BODY, GET_BODY, GET_QUERY)


class _NoCookies(cookiejar.DefaultCookiePolicy):
    """Refuse every cookie: credentials travel only in headers we set for one endpoint."""

    def set_ok(self, cookie: cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: cookiejar.Cookie, request: Any) -> bool:
        return False


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _problem(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short_reason(exc: BaseException) -> str:
    """A short cause for a connection failure, without URLs or internals."""
    text = str(exc)
    for pattern in (r"\[Errno -?\d+\] ([^'\")]+)", r"\[SSL: [A-Z_]+\] ([^(]+?)(?: \(_ssl|'|\"|$)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().rstrip(".")
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection"
    return type(exc).__name__


def default_download_styles(info: ServerInfo) -> list[str]:
    """The order to try download request styles in, best guess first."""
    manager = parse_manager_version(info.manager_version)
    if manager is not None:
        if manager < (24, 3, 7):
            first = GET_BODY
        elif manager < (26, 4, 7):
            # 26.3.0-26.4.6 read a JSON body only; older ones take body or query.
            first = POST_BODY
        else:
            first = POST_QUERY
    else:
        api = parse_api_version(info.api_version)
        first = GET_BODY if api is not None and api < (8, "20240315") else POST_QUERY
    return [first, *(s for s in _DOWNLOAD_STYLES if s != first)]


class BackendClient:
    """A client bound to one endpoint and its credentials.

    `http` is the transport (a `requests.Session`; a fresh one by default) and
    `clock` returns the aware UTC time used to sign requests.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        http: requests.Session | None = None,
        clock: Clock | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float | None = None,
    ) -> None:
        self.conn = conn
        self._http = http if http is not None else requests.Session()
        self._owns_http = http is None
        # An injected transport keeps its own adapters; the deadline is then checked
        # between chunks only.
        self._abortable = mount_abortable(self._http) if http is None else None
        self._deadline = deadline if deadline is not None else deadline_seconds()
        self._http.cookies.set_policy(_NoCookies())
        self._clock = clock or _utcnow
        self._timeout = timeout
        self._verify: bool | str = conn.ca_bundle or conn.verify_tls
        # Checked before the first request: requests would raise a bare OSError for a
        # missing path, and verify nothing with a directory of unhashed files.
        self._ca_checked = not conn.ca_bundle
        self._server: ServerInfo | None = None

    @classmethod
    def from_connection(
        cls,
        conn: Connection,
        *,
        http: requests.Session | None = None,
        clock: Clock | None = None,
    ) -> BackendClient:
        """The production constructor (kept separate so callers need not know the options)."""
        return cls(conn, http=http, clock=clock)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BackendClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    def _url(self, path: str, params: Params | None = None) -> tuple[str, str]:
        """Return (absolute URL, relative URL as signed) for an API path."""
        endpoint = urlsplit(self.conn.endpoint)
        if not path.startswith("/"):
            path = "/" + path
        if self.conn.endpoint_type == "session" and not path.startswith("/server/"):
            path = "/func" + path
        rel = endpoint.path.rstrip("/") + path
        if params:
            rel += "?" + urlencode(params, doseq=True, quote_via=quote)
        return f"{endpoint.scheme}://{endpoint.netloc}{rel}", rel

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
        limit: int | None = MAX_JSON_BODY,
        too_large: type[SshkitError] = ServerError,
        what: str | None = None,
    ) -> requests.Response:
        """Send one request and read its whole answer, within the deadline and `limit` bytes.

        Raises NetworkError (unreachable, TLS, deadline), `too_large` past `limit`,
        ConfigError when the CA certificates of the connection cannot be used.
        """
        if not self._ca_checked and isinstance(self._verify, str):
            ssl_context(ca_bundle=self._verify)
            self._ca_checked = True
        deadline = Deadline(self._deadline, self._abortable)
        try:
            with deadline, warnings.catch_warnings():
                if self._verify is False:
                    # --insecure was asked for explicitly; the CLI says so once.
                    warnings.simplefilter("ignore", InsecureRequestWarning)
                resp = self._http.request(
                    method,
                    url,
                    headers=dict(headers),
                    data=data,
                    timeout=self._timeout,
                    verify=self._verify,
                    stream=True,
                    allow_redirects=False,
                )
                read_limited(resp, limit, deadline)
                if deadline.expired:
                    raise TimeoutError
                return resp
        except BodyTooLargeError:
            raise too_large(
                f"{what or self._host_of(url)}: the answer is larger than"
                f" {describe_size(limit or 0)}; sshkit refuses it"
            ) from None
        except (TimeoutError, requests.RequestException) as exc:
            if isinstance(exc, TimeoutError) or deadline.expired:
                raise NetworkError(
                    f"{self._host_of(url)} did not finish answering within {self._deadline:g} s",
                    hint=f"set {DEADLINE_ENV}=SECONDS to allow more time",
                ) from None
            self._network_error(url, exc)

    def _network_error(self, url: str, exc: requests.RequestException) -> NoReturn:
        if isinstance(exc, requests.exceptions.SSLError):
            raise NetworkError(
                f"TLS verification of {self._host_of(url)} failed: {_short_reason(exc)}",
                hint="pass --ca-bundle FILE (or DIRECTORY) for a private CA"
                " (or --insecure to skip the check)",
            ) from None
        if isinstance(exc, requests.Timeout):
            raise NetworkError(f"{self._host_of(url)} did not answer in time") from None
        raise NetworkError(
            f"cannot connect to {self._host_of(url)}: {_short_reason(exc)}"
        ) from None

    @staticmethod
    def _host_of(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def server(self) -> ServerInfo:
        """The server's versions, probed once (`GET /`, or `GET /func/` in session mode)."""
        if self._server is None:
            self._server = self.probe()
        return self._server

    def probe(self) -> ServerInfo:
        """Ask the server for its API and manager versions; unauthenticated.

        Raises NetworkError when the endpoint cannot be reached. An answer that
        is not the expected JSON falls back to the configured version, as the
        official client does.
        """
        url, _ = self._url("/")
        resp = self._send("GET", url, headers={"User-Agent": USER_AGENT})
        data = _problem(resp) if resp.ok else {}
        version = data.get("version")
        if isinstance(version, str) and parse_api_version(version):
            manager = data.get("manager")
            self._server = ServerInfo(version, manager if isinstance(manager, str) else None)
        else:
            self._server = ServerInfo(self.conn.effective_api_version, None, probed=False)
        return self._server

    def _auth_headers(self, method: str, rel: str, content_type: str) -> dict[str, str]:
        version = self.server.negotiated_version
        date = self._clock()
        headers = {
            "User-Agent": USER_AGENT,
            "X-BackendAI-Domain": self.conn.domain,
            "X-BackendAI-Version": version,
            "Content-Type": content_type,
        }
        if self.conn.endpoint_type == "api" and self.conn.access_key and self.conn.secret_key:
            headers.update(  # the Date too
                sign_headers(
                    method,
                    rel,
                    date=date,
                    hostname=self.conn.hostname,
                    content_type=content_type,
                    api_version=version,
                    access_key=self.conn.access_key,
                    secret_key=self.conn.secret_key,
                )
            )
        else:
            headers["Date"] = format_date(date)
            if self.conn.endpoint_type == "session" and self.conn.session_id:
                headers[SESSION_ID_HEADER] = self.conn.session_id
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        what: str | None = None,
        send_body: bool | None = None,
        limit: int | None = MAX_JSON_BODY,
        too_large: type[SshkitError] = ServerError,
    ) -> requests.Response:
        """Send an authenticated API request and return the (2xx/3xx) response, body read.

        `what` names the operation in error messages ("listing folders"); an
        answer over `limit` bytes raises `too_large`. Raises AuthError,
        NotFoundError, RejectedError, ServerError (with the server's title and
        msg) or NetworkError.
        """
        method = method.upper()
        url, rel = self._url(path, params)
        has_body = json is not None if send_body is None else send_body
        body = jsonlib.dumps(json).encode() if has_body else None
        ctype = CONTENT_TYPE_JSON if has_body else CONTENT_TYPE_EMPTY
        resp = self._send(
            method,
            url,
            headers=self._auth_headers(method, rel, ctype),
            data=body,
            limit=limit,
            too_large=too_large,
            what=what,
        )
        if resp.status_code >= 300:
            raise self.error_for(resp, what or f"{method} {path}")
        return resp

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        what: str | None = None,
    ) -> Any:
        """Like `request`, returning the decoded JSON body (None when empty).

        Raises ServerError when the body is not JSON.
        """
        resp = self.request(method, path, json=json, params=params, what=what)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ServerError(
                f"{what or path}: the server answered something that is not JSON",
                status=resp.status_code,
            ) from None

    def error_for(
        self,
        resp: requests.Response,
        what: str,
        *,
        session: str | None = None,
        app: str | None = None,
    ) -> ApiError:
        """Map an HTTP error answer to the sshkit error type, keeping title and msg.

        The mapping is `sshkit.api.problems.classify`, shared with the relay;
        `session` and `app` name what the request was about. Raises nothing.
        """
        return classify(
            resp.status_code,
            resp.content,
            what=what,
            endpoint_type=self.conn.endpoint_type,
            session=session,
            app=app,
            headers=resp.headers,
        )

    # ------------------------------------------------------------ session mode

    def login(
        self, username: str, password: str, *, otp: str | None = None, force: bool = False
    ) -> LoginResult:
        """Session mode: `POST /server/login`; returns the new session id.

        `otp` is the one-time code of a TOTP account; `force` ends the oldest login
        when the account's concurrent-login cap is reached (26.4+). Raises
        OtpRequiredError (the account needs a code), LoginLimitError (409, the cap),
        AuthError for refused credentials (200 `authenticated: false` up to 26.3,
        401 from 26.4), RejectedError/ServerError/NetworkError otherwise.
        """
        if self.conn.endpoint_type != "session":
            raise RejectedError("password login needs a session-mode (webserver) endpoint")
        self.server  # noqa: B018 - the version header of the login call comes from the probe
        url, rel = self._url("/server/login")
        headers = self._auth_headers("POST", rel, CONTENT_TYPE_JSON)
        headers.pop(SESSION_ID_HEADER, None)  # log in anonymously, like the official client
        fields: dict[str, Any] = {"username": username, "password": password}
        if otp:
            fields["otp"] = otp
        if force:
            fields["force"] = True
        body = jsonlib.dumps(fields).encode()
        resp = self._send("POST", url, headers=headers, data=body)
        data = _problem(resp)
        if resp.status_code >= 300 and resp.status_code not in (401, 409):
            raise self.error_for(resp, "login")
        if resp.status_code >= 300 or data.get("authenticated") is not True:
            raise _login_refusal(username, resp.status_code, data, otp_sent=bool(otp))
        session_id = resp.headers.get(SESSION_ID_HEADER) or resp.cookies.get("AIOHTTP_SESSION")
        if not session_id:
            cookie = resp.headers.get("Set-Cookie", "")
            match = re.search(r"AIOHTTP_SESSION=([^;\s]+)", cookie)
            session_id = match.group(1) if match else None
        if not session_id:
            raise ServerError("login succeeded but the server sent no session id")
        raw_ok = data.get("data")
        ok: dict[str, Any] = raw_ok if isinstance(raw_ok, dict) else {}
        return LoginResult(
            session_id=session_id,
            access_key=ok.get("access_key"),
            role=ok.get("role"),
            status=ok.get("status"),
        )

    def logout(self) -> None:
        """Session mode: `POST /server/logout`. Raises the mapped error on failure."""
        url, rel = self._url("/server/logout")
        resp = self._send("POST", url, headers=self._auth_headers("POST", rel, CONTENT_TYPE_EMPTY))
        if resp.status_code >= 300:
            raise self.error_for(resp, "logout")

    # ------------------------------------------------------------------ identity

    def whoami(self) -> Identity:
        """Check the credentials with an authenticated call and say whose they are.

        Uses `GET /auth/role`; servers that lack it are asked `GET /auth/ssh-keypair`
        (auth-required everywhere). Raises AuthError when the credentials are refused.
        """
        try:
            data = self.request_json("GET", "/auth/role", what="checking the credentials")
        except NotFoundError:
            self.request_json("GET", "/auth/ssh-keypair", what="checking the credentials")
            data = {}
        data = data if isinstance(data, dict) else {}
        return Identity(
            access_key=self.conn.access_key,
            global_role=data.get("global_role"),
            domain_role=data.get("domain_role"),
            group_role=data.get("group_role"),
            raw=data,
        )

    # ------------------------------------------------------------------ sessions

    def get_session(self, name: str) -> SessionInfo:
        """`GET /session/{name}`: the session's info (§8.1).

        Raises NotFoundError, ServerError (also for a malformed answer).
        """
        what = f"looking up session {name!r}"
        data = self.request_json("GET", f"/session/{quote(name, safe='')}", what=what)
        return _parsed(what, SessionInfo.from_json, data)

    def match_sessions(self, prefix: str) -> list[MatchEntry]:
        """`GET /session/_/match?id=PREFIX`: up to 10 of your sessions whose name or id starts
        with PREFIX (§8.1; terminated ones included). Raises ServerError for a malformed
        answer, and the mapped errors."""
        what = "matching session names"
        data = self.request_json("GET", "/session/_/match", params={"id": prefix}, what=what)
        return _parsed(what, MatchEntry.list_from_json, data)

    def session_apps(self, name: str) -> list[AppInfo]:
        """`GET /stream/session/{name}/apps`: the session's service apps (§8.2).

        Raises NotFoundError, ServerError (also for a malformed answer).
        """
        what = f"listing the apps of session {name!r}"
        data = self.request_json("GET", f"/stream/session/{quote(name, safe='')}/apps", what=what)
        return _parsed(what, AppInfo.list_from_json, data)

    def download_session_archive(self, name: str, path: str) -> tuple[str, bytes]:
        """Download `path` from session `name`; return the raw (content type, body).

        Picks the request style by server version and falls back to the others
        on 405, 400 "deprecated" or 400 "invalid-api-params" (§5.5). The body is
        read up to a size cap. Raises NotFoundError (session or file missing),
        UnsafeDownloadError (too large), and the other mapped errors.
        """
        from sshkit.api.download import MAX_BODY_SIZE

        what = f"downloading {path} from session {name!r}"
        api_path = f"/session/{quote(name, safe='')}/download"
        last: ApiError | None = None
        for style in default_download_styles(self.server):
            method = "GET" if style.startswith("get") else "POST"
            in_body = style.endswith("body")
            try:
                resp = self.request(
                    method,
                    api_path,
                    json={"files": [path]} if in_body else None,
                    params=None if in_body else {"files": [path]},
                    what=what,
                    limit=MAX_BODY_SIZE,
                    too_large=UnsafeDownloadError,
                )
            except ApiError as exc:
                if _is_missing_file(exc):
                    raise NotFoundError(
                        f"{what} failed: no such file in the session",
                        status=exc.status,
                        title=exc.title,
                        msg=exc.msg,
                        error_type=exc.error_type,
                    ) from None
                if _is_wrong_style(exc):
                    last = exc
                    continue
                raise
            return resp.headers.get("Content-Type", ""), resp.content
        assert last is not None
        raise last

    def download_session_file(self, name: str, path: str) -> bytes:
        """Download one file from a running session, parsed and safety-checked.

        Raises UnsafeDownloadError for anything but one regular file of at most
        1 MiB named as requested, plus the errors of `download_session_archive`.
        """
        from sshkit.api.download import parse_session_download

        content_type, body = self.download_session_archive(name, path)
        return parse_session_download(content_type, body, path)

    def upload_session_file(self, name: str, path: str, data: bytes) -> None:
        """Write `data` to `path` (relative to /home/work) in the running session `name`.

        `POST /session/{name}/upload`, one multipart part (see
        `sshkit.api.session_upload`). The file is replaced; an existing file keeps
        its mode on the server. Raises UsageError for a file the server would
        refuse as too large, NotFoundError for an unknown session, RejectedError /
        ServerError for refusals and agent-side failures, NetworkError.
        """
        from sshkit.api.session_upload import MAX_FILE_SIZE, SIGNED_CONTENT_TYPE, multipart_body

        if len(data) > MAX_FILE_SIZE:
            raise UsageError(
                f"{path} would be {len(data)} bytes; session uploads must be under 1 MiB"
            )
        what = f"uploading {path} to session {name!r}"
        url, rel = self._url(f"/session/{quote(name, safe='')}/upload")
        body, boundary = multipart_body(path, data)
        headers = self._auth_headers("POST", rel, SIGNED_CONTENT_TYPE)
        headers["Content-Type"] = f"{SIGNED_CONTENT_TYPE}; boundary={boundary}"
        resp = self._send("POST", url, headers=headers, data=body)
        if resp.status_code >= 400:
            raise self.error_for(resp, what)

    # ------------------------------------------------------------------- folders

    def list_folders(self) -> list[FolderInfo]:
        """`GET /folders`: the folders the user can access. Raises ServerError for a
        malformed answer, and the mapped errors."""
        what = "listing folders"
        return _parsed(
            what, FolderInfo.list_from_json, self.request_json("GET", "/folders", what=what)
        )

    def create_folder(
        self,
        name: str,
        *,
        host: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
    ) -> None:
        """`POST /folders`. Raises RejectedError for reserved or duplicate names."""
        body = {
            "name": name,
            "host": host,
            "usage_mode": usage_mode,
            "permission": permission,
            "cloneable": False,
        }
        self.request_json("POST", "/folders", json=body, what=f"creating folder {name!r}")

    def folder_info(self, name: str) -> FolderInfo:
        """`GET /folders/{name}`. Raises NotFoundError, ServerError (also for a malformed
        answer)."""
        what = f"looking up folder {name!r}"
        data = self.request_json("GET", f"/folders/{quote(name, safe='')}", what=what)
        return _parsed(what, FolderInfo.from_json, data)

    def list_files(self, folder: str, path: str = "") -> list[FileEntry]:
        """`GET /folders/{name}/files?path=`: the entries of a directory.

        Raises NotFoundError, ServerError (also for a malformed answer).
        """
        what = f"listing {path or '.'} in folder {folder!r}"
        data = self.request_json(
            "GET",
            f"/folders/{quote(folder, safe='')}/files",
            params={"path": path or "."},
            what=what,
        )
        return _parsed(what, FileEntry.list_from_json, data)

    def upload_file(self, folder: str, path: str, data: bytes) -> None:
        """Upload `data` as `path` in `folder`: request-upload, then tus PATCHes (§7.5).

        An empty file gets one empty PATCH so that the server creates it. The
        storage proxy gets only its token, never our credentials.
        """
        what = f"uploading {path} to folder {folder!r}"
        ticket = self.request_json(
            "POST",
            f"/folders/{quote(folder, safe='')}/request-upload",
            json={"path": path, "size": len(data)},
            what=what,
        )
        url, token = self._ticket(ticket, what)
        offset = 0
        while True:
            chunk = data[offset : offset + TUS_CHUNK]
            resp = self._send(
                "PATCH",
                _with_query(url, {"token": token}),
                headers={
                    "User-Agent": USER_AGENT,
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
                data=chunk,
            )
            if resp.status_code >= 300:
                raise self.error_for(resp, what)
            reported = resp.headers.get("Upload-Offset", "")
            offset = int(reported) if reported.isdigit() else offset + len(chunk)
            if offset >= len(data):
                return

    def download_file(self, folder: str, path: str, *, max_size: int | None = None) -> bytes:
        """Download `path` from `folder`: request-download, then GET (§7.6).

        Raises NotFoundError, and UnsafeDownloadError beyond `max_size` bytes.
        """
        what = f"downloading {path} from folder {folder!r}"
        ticket = self.request_json(
            "POST",
            f"/folders/{quote(folder, safe='')}/request-download",
            json={"path": path},
            what=what,
        )
        url, token = self._ticket(ticket, what)
        download_url = _with_query(url, {"token": token})
        resp = self._send(
            "GET",
            download_url,
            headers={"User-Agent": USER_AGENT},
            limit=max_size,
            too_large=UnsafeDownloadError,
            what=what,
        )
        if resp.status_code >= 300:
            raise self.error_for(resp, what)
        return resp.content

    def delete_files(self, folder: str, files: Iterable[str], *, recursive: bool = False) -> None:
        """`DELETE /folders/{name}/delete-files`."""
        names = list(files)
        self.request(
            "DELETE",
            f"/folders/{quote(folder, safe='')}/delete-files",
            json={"files": names, "recursive": recursive},
            what=f"deleting {', '.join(names)} in folder {folder!r}",
        )

    @staticmethod
    def _ticket(ticket: Any, what: str) -> tuple[str, str]:
        if not (
            isinstance(ticket, dict)
            and isinstance(ticket.get("url"), str)
            and isinstance(ticket.get("token"), str)
        ):
            raise ServerError(f"{what}: the server's answer lacks a storage URL and token")
        url = ticket["url"]
        if urlsplit(url).scheme not in ("http", "https"):
            raise ServerError(f"{what}: the storage URL is not http(s)")
        return url, ticket["token"]

    # ---------------------------------------------------------------- SSH keypair

    def get_ssh_keypair(self) -> Keypair:
        """`GET /auth/ssh-keypair`: the public half of the keypair new sessions get.

        Raises ServerError for a malformed answer, and the mapped errors.
        """
        what = "reading the SSH keypair"
        data = self.request_json("GET", "/auth/ssh-keypair", what=what)
        return _parsed(what, Keypair.from_json, data)

    def set_ssh_keypair(self, public_key: str, private_key: str) -> None:
        """`POST /auth/ssh-keypair`: replace the keypair new sessions get."""
        self.request_json(
            "POST",
            "/auth/ssh-keypair",
            json={"pubkey": public_key, "privkey": private_key},
            what="uploading the SSH keypair",
        )


def _parsed(what: str, parse: Callable[[Any], T], data: Any) -> T:
    """`parse(data)`, with a malformed answer as one ServerError line."""
    try:
        return parse(data)
    except MalformedAnswer as exc:
        raise ServerError(f"{what}: the server's answer is malformed ({exc})") from None


_SSO_HINT = (
    "check the user name and password; an account that signs in through SSO has no "
    "password here: log in with its access key and secret key (--endpoint-type api)"
)


def _login_refusal(
    username: str, status: int, data: Mapping[str, Any], *, otp_sent: bool
) -> AuthError:
    """The error for a refused login: 200 `authenticated: false`, 401 (26.4+) or 409."""
    raw_info = data.get("data")
    info: Mapping[str, Any] = raw_info if isinstance(raw_info, dict) else data
    kind = info.get("type") if isinstance(info.get("type"), str) else None
    title = info.get("title") if isinstance(info.get("title"), str) else None
    details = info.get("details") or info.get("msg")
    details = details if isinstance(details, str) else None
    kwargs: dict[str, Any] = dict(status=status, title=title, msg=details, error_type=kind)
    if status == 409:
        return LoginLimitError(
            f"login as {username} refused: the account has reached its limit of "
            "concurrent logins; pass --force to end the oldest one",
            hint="--force logs in anyway and ends the account's oldest login",
            **kwargs,
        )
    if (kind or "").endswith("require-totp-authentication"):
        return OtpRequiredError(
            f"login as {username} needs a one-time code (two-factor authentication): "
            "pass --otp CODE",
            hint="the code is the 6 digits your authenticator app shows for this account",
            **kwargs,
        )
    what = "wrong user name or password"
    if otp_sent:
        what = "wrong user name, password or one-time code"
    return AuthError(f"login as {username} failed: {what}", hint=_SSO_HINT, **kwargs)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    sep = "&" if urlsplit(url).query else "?"
    return url + sep + urlencode(params)


def _is_wrong_style(exc: ApiError) -> bool:
    slug = (exc.error_type or "").rsplit("/", 1)[-1]
    return exc.status == 405 or (
        exc.status == 400 and slug in ("deprecated", "invalid-api-params", "generic-bad-request")
    )


def _is_missing_file(exc: ApiError) -> bool:
    text = f"{exc.msg or ''} {exc.title or ''}"
    return exc.status >= 500 and ("FileNotFoundError" in text or "not found" in text.lower())
