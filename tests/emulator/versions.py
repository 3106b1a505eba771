"""What differs between the emulated server versions (spec §10 "Version switches", §11)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DownloadStyle = Literal["get-body", "post-body", "post-json-body", "post-query"]

# The manager's VALID_VERSIONS, oldest first (spec §4.2).
_ALL_API_VERSIONS = (
    "v4.20181215",
    "v4.20190115",
    "v4.20190315",
    "v4.20190615",
    "v5.20191215",
    "v6.20200815",
    "v6.20210815",
    "v6.20220315",
    "v6.20220615",
    "v7.20230615",
    "v8.20240315",
    "v8.20240915",
    "v9.20250722",
)


@dataclass(frozen=True)
class VersionProfile:
    """Behaviour switches of one emulated server release."""

    name: str
    manager_version: str
    api_version: str
    # GET+JSON body (<= 24.03.6), POST+body or query (24.03.7-26.2.5), POST+JSON body
    # only (26.3.0-26.4.6), POST+query only (26.4.7+). Spec §14.
    download_style: DownloadStyle
    # The legacy `files` JSON string in folder listings (dropped in 25.6.0) and the
    # `mode` as a 3-digit octal string (an int st_mode from 25.6.0).
    files_legacy: bool
    # Folder listing reads `path` from the query only (newer handlers).
    files_path_query_only: bool
    # tus PATCH: Upload-Offset required (400) and must match (409) from 26.3.0.
    tus_strict_offset: bool
    # 23.09 validates folder names as slugs; 24.09.6+ uses VFolderName (<= 64 chars).
    slug_folder_names: bool
    # The remaining switches are the real-release facts of spec §14 (issue #12).
    # GET /session/{name} answers 500 for running sessions (26.1.0-26.3.3).
    session_info_500: bool = False
    # A failed login passes the manager's 401 on (26.4.0+) instead of 200.
    login_failure_401: bool = False
    # max_concurrent_logins enforced with 409 unless "force" (26.4.0+).
    login_cap_supported: bool = False
    # The TOTP plugin's login hook (plugin 26.4+; webserver 25.9+).
    totp_supported: bool = False
    # Logout answers 200 (25.19.2+) instead of 201.
    logout_200: bool = False
    # Error bodies carry `error_code` (25.8+).
    error_code: bool = False
    # A missing file in a session download is a bare 500 internal-server-error (26.1+).
    download_missing_bare_500: bool = False
    # POST /auth/ssh-keypair validates the pair (25.6.0+); OpenSSH private keys accepted (26.4.4+).
    validate_ssh_keypair: bool = False
    openssh_private_key_ok: bool = False

    @property
    def valid_api_versions(self) -> tuple[str, ...]:
        versions = _ALL_API_VERSIONS[: _ALL_API_VERSIONS.index(self.api_version) + 1]
        if self.api_version.startswith("v9"):
            # main's list lacks v6.20210815, which 23.09 had.
            versions = tuple(v for v in versions if v != "v6.20210815")
        return versions


PROFILES: dict[str, VersionProfile] = {
    "23.09": VersionProfile(
        name="23.09",
        manager_version="23.09.10",
        api_version="v7.20230615",
        download_style="get-body",
        files_legacy=True,
        files_path_query_only=False,
        tus_strict_offset=False,
        slug_folder_names=True,
    ),
    "24.09": VersionProfile(
        name="24.09",
        manager_version="24.09.14",
        api_version="v8.20240915",
        download_style="post-body",
        files_legacy=True,
        files_path_query_only=False,
        tus_strict_offset=False,
        slug_folder_names=False,
    ),
    "26.3": VersionProfile(
        name="26.3",
        manager_version="26.3.0",
        api_version="v9.20250722",
        download_style="post-json-body",
        files_legacy=False,
        files_path_query_only=True,
        tus_strict_offset=True,
        slug_folder_names=False,
        session_info_500=True,
        logout_200=True,
        error_code=True,
        download_missing_bare_500=True,
        validate_ssh_keypair=True,
    ),
    "26.8": VersionProfile(
        name="26.8",
        manager_version="26.8.1",
        api_version="v9.20250722",
        download_style="post-query",
        files_legacy=False,
        files_path_query_only=True,
        tus_strict_offset=True,
        slug_folder_names=False,
        login_failure_401=True,
        login_cap_supported=True,
        totp_supported=True,
        logout_200=True,
        error_code=True,
        download_missing_bare_500=True,
        validate_ssh_keypair=True,
        openssh_private_key_ok=True,
    ),
}
