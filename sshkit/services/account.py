"""Logging in and out, who am I, and fetching the container key of a session.

The key every session of a user accepts is that user's keypair SSH key, served
by each session as `/home/work/id_container` (protocol spec §7.8). It belongs
to the access key, not to one session, so one file per profile serves all of
the user's sessions: `~/.ssh/sshkit/<profile>/id_container`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sshkit import localfs
from sshkit.credentials import StoredLogin, check_profile_name, delete_login, write_login
from sshkit.errors import (
    KeyFormatError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    ServerError,
)
from sshkit.settings import Connection, Settings, normalize_endpoint

if TYPE_CHECKING:
    import requests

    from sshkit.api.client import BackendClient, Clock
    from sshkit.api.models import Identity

CONTAINER_KEY = "id_container"


@dataclass(frozen=True)
class LoginOutcome:
    profile: str
    endpoint: str
    endpoint_type: str
    username: str | None
    access_key: str | None
    api_version: str
    manager_version: str | None
    stored_at: Path


@dataclass(frozen=True)
class LogoutOutcome:
    profile: str
    endpoint: str | None
    forgotten: bool
    server_logout: bool
    warning: str | None = None


@dataclass(frozen=True)
class WhoAmI:
    profile: str
    endpoint: str
    endpoint_type: str
    username: str | None
    access_key: str | None
    global_role: str | None
    domain_role: str | None
    api_version: str
    manager_version: str | None


@dataclass(frozen=True)
class FetchKeyResult:
    path: Path
    fingerprint: str | None
    backup: Path | None
    changed: bool
    key_type: str | None = None
    bits: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _client(
    conn: Connection, http: requests.Session | None = None, clock: Clock | None = None
) -> BackendClient:
    from sshkit.api.client import BackendClient

    return BackendClient.from_connection(conn, http=http, clock=clock)


def _unsaved_connection(
    profile: str,
    endpoint: str,
    endpoint_type: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    verify_tls: bool = True,
    ca_bundle: str | None = None,
    domain: str = "default",
) -> Connection:
    return Connection(
        endpoint=normalize_endpoint(endpoint),
        endpoint_type="session" if endpoint_type == "session" else "api",
        access_key=access_key,
        secret_key=secret_key,
        session_id=None,
        api_version=None,
        verify_tls=verify_tls,
        ca_bundle=ca_bundle,
        profile=profile,
        domain=domain,
    )


def login(
    settings: Settings,
    *,
    username: str | None = None,
    password: str | None = None,
    otp: str | None = None,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    http: requests.Session | None = None,
    clock: Clock | None = None,
) -> LoginOutcome:
    """Log in with the resolved settings and store the login for the profile.

    Session mode posts the user name and password (plus `otp`, the one-time code
    of a TOTP account, and `force`, which ends the oldest login when the account's
    login cap is reached) and keeps the session id; API mode checks the access and
    secret keys with a signed call. Nothing is stored unless the server accepted
    the credentials. Raises OtpRequiredError, LoginLimitError, AuthError,
    NetworkError, ConfigError and the other API errors.
    """
    profile = check_profile_name(settings.profile.value or "default")
    endpoint = settings.value("endpoint")
    assert endpoint, "the caller checks that an endpoint is set"
    kind = settings.value("endpoint_type") or "api"
    domain = settings.value("domain") or "default"
    if kind == "session":
        assert username is not None and password is not None
        conn = _unsaved_connection(
            profile,
            endpoint,
            "session",
            verify_tls=settings.verify_tls,
            ca_bundle=settings.value("ca_bundle"),
            domain=domain,
        )
        with _client(conn, http, clock) as client:
            result = client.login(username, password, otp=otp, force=force)
            server = client.server
        stored = StoredLogin(
            endpoint=conn.endpoint,
            endpoint_type="session",
            access_key=result.access_key,
            session_id=result.session_id,
            api_version=server.negotiated_version,
            manager_version=server.manager_version,
            username=username,
            domain=domain,
            verify_tls=conn.verify_tls,
            ca_bundle=conn.ca_bundle,
        )
    else:
        conn = _unsaved_connection(
            profile,
            endpoint,
            "api",
            access_key=settings.value("access_key"),
            secret_key=settings.value("secret_key"),
            verify_tls=settings.verify_tls,
            ca_bundle=settings.value("ca_bundle"),
            domain=domain,
        )
        with _client(conn, http, clock) as client:
            client.whoami()
            server = client.server
        stored = StoredLogin(
            endpoint=conn.endpoint,
            endpoint_type="api",
            access_key=conn.access_key,
            secret_key=conn.secret_key,
            api_version=server.negotiated_version,
            manager_version=server.manager_version,
            username=settings.value("username"),
            domain=domain,
            verify_tls=conn.verify_tls,
            ca_bundle=conn.ca_bundle,
        )
    path = write_login(profile, stored, environ)
    return LoginOutcome(
        profile=profile,
        endpoint=stored.endpoint,
        endpoint_type=stored.endpoint_type,
        username=stored.username,
        access_key=stored.access_key,
        api_version=server.negotiated_version,
        manager_version=server.manager_version,
        stored_at=path,
    )


def logout(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    http: requests.Session | None = None,
) -> LogoutOutcome:
    """Forget the profile's stored login; in session mode also end the server session.

    The local login is removed even when the server cannot be reached (then
    `warning` says so). Raises LocalFileError when the file cannot be removed.
    """
    from sshkit.errors import ApiError

    profile = settings.profile.value or "default"
    stored = settings.login
    server_logout = False
    warning = None
    if stored is not None and stored.endpoint_type == "session" and stored.session_id:
        conn = Connection(
            endpoint=stored.endpoint,
            endpoint_type="session",
            access_key=None,
            secret_key=None,
            session_id=stored.session_id,
            api_version=stored.api_version,
            verify_tls=stored.verify_tls,
            ca_bundle=stored.ca_bundle,
            profile=profile,
            domain=stored.domain or "default",
        )
        try:
            with _client(conn, http) as client:
                client.logout()
            server_logout = True
        except (NetworkError, ApiError) as exc:
            warning = f"the server session was not ended: {exc.message}"
    forgotten = delete_login(profile, environ)
    return LogoutOutcome(
        profile=profile,
        endpoint=stored.endpoint if stored else None,
        forgotten=forgotten,
        server_logout=server_logout,
        warning=warning,
    )


def whoami(
    client: BackendClient,
    *,
    username: str | None = None,
    access_key: str | None = None,
) -> WhoAmI:
    """Check `client`'s credentials against the server and describe them.

    `username` and `access_key` are what the stored login knows (session mode
    has no access key of its own). Raises AuthError, NetworkError and the other
    API errors.
    """
    identity: Identity = client.whoami()
    server = client.server
    conn = client.conn
    return WhoAmI(
        profile=conn.profile,
        endpoint=conn.endpoint,
        endpoint_type=conn.endpoint_type,
        username=username,
        access_key=identity.access_key or access_key,
        global_role=identity.global_role,
        domain_role=identity.domain_role,
        api_version=server.negotiated_version,
        manager_version=server.manager_version,
    )


def ssh_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's `~/.ssh` directory (`localfs.ssh_dir`). Raises LocalFileError."""
    return localfs.ssh_dir(environ)


def default_key_path(profile: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where `fetch-key` puts a profile's container key: `~/.ssh/sshkit/<profile>/id_container`."""
    return ssh_dir(environ) / "sshkit" / check_profile_name(profile) / CONTAINER_KEY


def _describe_key(data: bytes) -> tuple[str | None, str | None, int | None]:
    """(fingerprint, key type, bits) of a private key file; raises KeyFormatError."""
    from sshkit.formats.keys import probe_key_file

    info = probe_key_file(data)
    if not info.private:
        raise KeyFormatError("the downloaded id_container is a public key, not a private key")
    if info.public is None:
        return None, None, None
    return info.public.fingerprint, info.public.key_type, info.public.bits


def _backup_path(path: Path) -> Path:
    candidate = path.with_name(path.name + localfs.BACKUP_SUFFIX)
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}{localfs.BACKUP_SUFFIX}.{n}")
        n += 1
    return candidate


# Kubernetes agents mount ~/.ssh from a ConfigMap and put the key there (spec §14).
KUBERNETES_CONTAINER_KEY = ".ssh/id_container"


def download_container_key(client: BackendClient, session: str) -> bytes:
    """The session's private key: `id_container`, else (Kubernetes agents) `.ssh/id_container`.

    From 26.1 a missing file is a bare 500, indistinguishable from other agent
    failures, so a 500 also tries the second place. Raises the first attempt's
    error when the second finds nothing either.
    """
    try:
        return client.download_session_file(session, CONTAINER_KEY)
    except (NotFoundError, ServerError) as first:
        if first.status != 500:
            raise  # 404: the session itself is missing or ambiguous
        try:
            return client.download_session_file(session, KUBERNETES_CONTAINER_KEY)
        except (NotFoundError, ServerError):
            raise first from None


def fetch_container_key(
    client: BackendClient,
    session: str,
    out: Path | None = None,
    *,
    force: bool = False,
) -> FetchKeyResult:
    """Download the session's `id_container` and write it, mode 0600 from creation.

    `out` defaults to the profile's key path (the profile of `client`'s login). A
    symlink or a file that is not a key at `out` is refused unless `force`.

    The download is parsed defensively and the key must load before anything
    is written. An existing, different key at `out` is first kept as a backup
    (`<name>.sshkit-backup`, then `.1`, `.2`...). Raises NotFoundError (session
    or file missing), UnsafeDownloadError, KeyFormatError, LocalFileError and
    the other API errors; nothing is written then.
    """
    from sshkit.formats.names import check_session_name

    check_session_name(session)
    path = out if out is not None else default_key_path(client.conn.profile)
    localfs.check_key_target(path, force=force)
    data = download_container_key(client, session)
    fingerprint, key_type, bits = _describe_key(data)
    if path.is_dir():
        raise LocalFileError(f"{path} is a directory", hint="pass a file name with -o")
    localfs.ensure_private_dir(path.parent, 0o700)
    existing = localfs.read_bytes_if_exists(path)
    if existing == data:
        if os.name != "nt":
            os.chmod(localfs.resolve_target(path), 0o600)
        return FetchKeyResult(path, fingerprint, None, False, key_type, bits)
    backup = None
    if existing is not None:
        backup = _backup_path(localfs.resolve_target(path))
        localfs.atomic_write(backup, existing, mode=0o600)
    localfs.atomic_write(path, data, mode=0o600)
    return FetchKeyResult(path, fingerprint, backup, True, key_type, bits)
