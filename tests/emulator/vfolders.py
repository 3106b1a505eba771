"""Virtual folders (spec §7): list, create, info, files, mkdir, request-upload/-download,
delete-files, delete; plus the GraphQL `vfolder_list` and the announcement the CLI asks for.

Folder contents live on disk under STATE/vfolders/<id>/; uploads are staged outside
the folder tree (a real storage proxy stages them in `<folder>/.upload/`).
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.emulator.problems import ProblemError, invalid_params
from tests.emulator.routes import ApiRoute, api_params, json_response
from tests.emulator.state import EmulatorState, get_state
from tests.emulator.versions import VersionProfile

DEFAULT_HOST = "local:volume1"
TOKEN_TTL = 3600.0

_SYSTEM_DIRS = "bin boot dev etc lib lib64 media mnt opt proc root run sbin srv sys tmp usr var"
_SYSTEM_DIRS += " home"
RESERVED_NAMES = frozenset(
    {".terminfo", ".jupyter", ".tmux.conf", ".ssh"} | {f"/{d}" for d in _SYSTEM_DIRS.split()}
)
RESERVED_PATTERNS = (re.compile(r"^\.[a-z0-9]+rc$"), re.compile(r"^\.[a-z0-9]+_profile$"))
SLUG = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


@dataclass
class Folder:
    name: str
    id: str
    path: Path
    host: str
    created: datetime
    usage_mode: str = "general"
    permission: str = "rw"
    cloneable: bool = False
    max_size: int | None = None


@dataclass
class Transfer:
    """An upload or download session granted by request-upload / request-download."""

    op: str
    folder: Folder
    relpath: str
    size: int
    expires: float
    staging: Path | None = None
    archive: bool = False


@dataclass
class FolderStore:
    state: EmulatorState
    root: Path
    folders: dict[str, Folder] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.staging_dir = self.root.parent / "upload-staging"
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def get_by_name(self, name: str) -> Folder | None:
        return self.folders.get(name)

    def find(self, ref: str) -> Folder:
        """By name, else by id (hex with or without dashes). Raises 404."""
        folder = self.folders.get(ref)
        if folder is None:
            plain = ref.replace("-", "")
            folder = next((f for f in self.folders.values() if f.id == plain), None)
        if folder is None:
            raise ProblemError(404, "object-not-found", "No such virtual folder.", data=ref)
        return folder

    def create(
        self,
        name: str,
        *,
        host: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
        cloneable: bool = False,
        max_size: int | None = None,
    ) -> Folder:
        fid = uuid.uuid4().hex
        path = self.root / fid
        path.mkdir(mode=0o755)
        folder = Folder(
            name=name,
            id=fid,
            path=path,
            host=host or DEFAULT_HOST,
            created=datetime.now(UTC),
            usage_mode=usage_mode,
            permission=permission,
            cloneable=cloneable,
            max_size=max_size,
        )
        self.folders[name] = folder
        return folder

    def delete(self, folder: Folder) -> None:
        self.folders.pop(folder.name, None)
        shutil.rmtree(folder.path, ignore_errors=True)

    def grant(
        self, op: str, folder: Folder, relpath: str, size: int = 0, *, archive: bool = False
    ) -> str:
        token = secrets.token_urlsafe(32)
        transfer = Transfer(
            op=op,
            folder=folder,
            relpath=relpath,
            size=size,
            expires=time.time() + TOKEN_TTL,
            archive=archive,
        )
        if op == "upload":
            transfer.staging = self.staging_dir / uuid.uuid4().hex
            transfer.staging.touch(mode=0o644)
        self.transfers[token] = transfer
        return token

    def transfer(self, token: str, op: str) -> Transfer | None:
        transfer = self.transfers.get(token)
        if transfer is None or transfer.op != op or transfer.expires < time.time():
            return None
        return transfer


def resolve(folder: Folder, relpath: str) -> Path:
    """A path inside the folder; raises 400 for absolute paths or escapes."""
    if relpath.startswith("/"):
        raise invalid_params("The path must be relative.", data={"path": relpath})
    norm = posixpath.normpath(relpath or ".")
    if norm == ".." or norm.startswith("../"):
        raise invalid_params("The path is out of the folder.", data={"path": relpath})
    return folder.path if norm == "." else folder.path / norm


def _folder_summary(state: EmulatorState, folder: Folder) -> dict[str, Any]:
    return {
        "name": folder.name,
        "id": folder.id,
        "quota_scope_id": f"user:{state.creds.user_id}",
        "host": folder.host,
        "status": "ready",
        "usage_mode": folder.usage_mode,
        "created_at": folder.created.isoformat(),
        "is_owner": True,
        "permission": folder.permission,
        "user": state.creds.user_id,
        "group": None,
        "creator": state.creds.username,
        "user_email": state.creds.username,
        "group_name": None,
        "ownership_type": "user",
        "type": "user",
        "cloneable": folder.cloneable,
        "max_files": 0,
        "max_size": folder.max_size,
        "cur_size": _usage(folder)[1],
    }


def _usage(folder: Folder) -> tuple[int, int]:
    count = size = 0
    for p in folder.path.rglob("*"):
        if p.is_file():
            count += 1
            size += p.stat().st_size
    return count, size


def validate_name(state: EmulatorState, name: Any) -> str:
    """The manager's folder-name rules for the emulated version (spec §7.2)."""
    profile = state.profile
    if not isinstance(name, str) or not name:
        raise invalid_params("Input validation error", data={"name": "is required"})
    if profile.slug_folder_names:
        body = name[1:] if name.startswith(".") else name
        if not SLUG.match(body):
            raise invalid_params(
                "Input validation error", data={"name": "value must be a valid slug."}
            )
    reserved = name in RESERVED_NAMES or any(p.match(name) for p in RESERVED_PATTERNS)
    if name == ".ssh" and state.options.allow_dot_ssh_folder:
        reserved = False
    if reserved:
        if profile.slug_folder_names:
            raise invalid_params(f"{name} is reserved for internal operations.")
        raise invalid_params(f"VFolder name '{name}' is reserved for internal operations")
    # VFolderName (24.09.6+): at most 64 characters. A "/" could never be routed anyway.
    if not profile.slug_folder_names and (len(name) > 64 or "/" in name):
        raise invalid_params("Input validation error", data={"name": "invalid vfolder name"})
    return name


def _parse_quota(value: Any) -> int | None:
    if value in (None, "", "0", 0):
        return None
    m = re.fullmatch(r"(\d+)([kmgt]?)i?b?", str(value).strip().lower())
    if not m:
        raise invalid_params("Input validation error", data={"quota": "invalid size"})
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(m.group(1)) * mult // (1024 * 1024) or None


async def list_folders(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    params = await api_params(request)
    if params.get("all") in (True, "true", "1"):
        raise invalid_params("Deprecated use of 'all' option")
    return json_response([_folder_summary(state, f) for f in state.folders.folders.values()])


async def create_folder(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    params = await api_params(request)
    name = validate_name(state, params.get("name"))
    group = params.get("group") or params.get("groupId") or params.get("group_id")
    if name.startswith(".") and name != ".local" and group:
        raise invalid_params("dot-prefixed vfolders cannot be a group folder.")
    if state.folders.get_by_name(name) is not None:
        raise ProblemError(
            400,
            "vfolder-already-exists",
            "The virtual folder already exists with the same name.",
            data=name,
        )
    folder = state.folders.create(
        name,
        host=params.get("host"),
        usage_mode=str(params.get("usage_mode") or "general"),
        permission=str(params.get("permission") or "rw"),
        cloneable=bool(params.get("cloneable", False)),
        max_size=_parse_quota(params.get("quota")),
    )
    return json_response(
        {
            "id": folder.id,
            "name": folder.name,
            "quota_scope_id": f"user:{state.creds.user_id}",
            "host": folder.host,
            "usage_mode": folder.usage_mode,
            "permission": folder.permission,
            "max_size": folder.max_size,
            "creator": state.creds.username,
            "ownership_type": "user",
            "user": state.creds.user_id,
            "group": None,
            "cloneable": folder.cloneable,
            "status": "ready",
        },
        status=201,
    )


async def folder_info(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    count, size = _usage(folder)
    info = _folder_summary(state, folder)
    info.update(
        {
            "numFiles": count,
            "num_files": count,
            "used_bytes": size,
            "created": folder.created.isoformat(),
            "last_used": None,
        }
    )
    return json_response(info)


async def delete_folder(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    state.folders.delete(folder)
    return web.Response(status=204)


def _mode_str(mode: int) -> str:
    return stat.filemode(mode)


async def list_files(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    profile = state.profile
    folder = state.folders.find(request.match_info["name"])
    params = await api_params(request, query_only=profile.files_path_query_only)
    relpath = str(params.get("path") or "")
    target = resolve(folder, relpath)
    if not target.is_dir():
        raise ProblemError(404, "object-not-found", "No such file or directory.", data=relpath)
    items: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    for entry in sorted(target.iterdir(), key=lambda p: p.name):
        st = entry.lstat()
        kind = "SYMLINK" if entry.is_symlink() else "DIRECTORY" if entry.is_dir() else "FILE"
        items.append(
            {
                "name": entry.name,
                "type": kind,
                "size": st.st_size,
                "mode": oct(st.st_mode)[-3:] if profile.files_legacy else st.st_mode,
                "created": datetime.fromtimestamp(st.st_ctime, UTC).isoformat(),
                "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(),
            }
        )
        legacy.append(
            {
                "filename": entry.name,
                "size": st.st_size,
                "mode": _mode_str(st.st_mode),
                "ctime": st.st_ctime,
                "atime": 0,
                "mtime": st.st_mtime,
            }
        )
    body: dict[str, Any] = {"items": items}
    if profile.files_legacy:
        body["files"] = json.dumps(legacy)
    return json_response(body)


async def mkdir(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    params = await api_params(request)
    paths = params.get("path")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths:
        raise invalid_params("Input validation error", data={"path": "is required"})
    parents = bool(params.get("parents", True))
    exist_ok = bool(params.get("exist_ok", False))
    for p in paths:
        target = resolve(folder, str(p))
        try:
            target.mkdir(parents=parents, exist_ok=exist_ok)
        except FileExistsError as exc:
            raise ProblemError(
                400, "vfolder-invalid-parameters", "Folder already exists.", data=str(p)
            ) from exc
        except FileNotFoundError as exc:
            raise invalid_params("Parent directory does not exist.", data=str(p)) from exc
    return json_response(
        {"results": {"success": [str(p) for p in paths], "failed": []}}, status=201
    )


async def request_upload(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    params = await api_params(request)
    relpath = params.get("path")
    size = params.get("size")
    if not isinstance(relpath, str) or not relpath:
        raise invalid_params("Input validation error", data={"path": "is required"})
    try:
        size_int = int(size)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise invalid_params("Input validation error", data={"size": "is required"}) from exc
    if size_int < 0:
        raise invalid_params("Input validation error", data={"size": "must be >= 0"})
    if folder.permission == "ro":
        raise ProblemError(403, "generic-forbidden", "Forbidden operation.")
    resolve(folder, relpath)
    token = state.folders.grant("upload", folder, relpath, size_int)
    return json_response({"token": token, "url": state.storage_url + "/upload"})


async def request_download(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    params = await api_params(request)
    relpath = params.get("path") or params.get("file")
    if not isinstance(relpath, str) or not relpath:
        raise invalid_params("Input validation error", data={"path": "is required"})
    resolve(folder, relpath)
    token = state.folders.grant(
        "download", folder, relpath, archive=params.get("archive") in (True, "true", "1")
    )
    return json_response({"token": token, "url": state.storage_url + "/download"})


async def delete_files(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    folder = state.folders.find(request.match_info["name"])
    params = await api_params(request)
    files = params.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files:
        raise invalid_params("Input validation error", data={"files": "is required"})
    recursive = params.get("recursive") in (True, "true", "1")
    targets = [resolve(folder, str(f)) for f in files]
    for target, name in zip(targets, files, strict=True):
        if target == folder.path:
            raise invalid_params("Cannot delete the folder root.", data=name)
        if not target.exists() and not target.is_symlink():
            raise ProblemError(404, "storage/file-not-found", "File not found", data=name)
        if target.is_dir() and not target.is_symlink() and not recursive:
            raise invalid_params("Cannot delete a directory without recursive=true.", data=name)
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    return json_response({})


async def announcement(request: web.Request) -> web.StreamResponse:
    return json_response({"enabled": False, "message": ""})


async def admin_gql(request: web.Request) -> web.StreamResponse:
    """Only the `vfolder_list` query the 23.09 CLI's `vfolder list` sends."""
    state = get_state(request)
    params = await api_params(request)
    query = str(params.get("query", ""))
    if "vfolder_list" not in query:
        return json_response({"data": None, "errors": [{"message": "not emulated"}]})
    variables = params.get("variables") or {}
    limit = int(variables.get("limit") or 20)
    offset = int(variables.get("offset") or 0)
    all_items = [
        {
            "host": f.host,
            "name": f.name,
            "id": f.id,
            "created_at": f.created.isoformat(),
            "creator": state.creds.username,
            "group": None,
            "permission": f.permission,
            "ownership_type": "user",
            "status": "ready",
            "usage_mode": f.usage_mode,
        }
        for f in state.folders.folders.values()
    ]
    return json_response(
        {
            "data": {
                "vfolder_list": {
                    "items": all_items[offset : offset + limit],
                    "total_count": len(all_items),
                }
            }
        }
    )


def api_routes(profile: VersionProfile) -> list[ApiRoute]:
    routes = [
        ApiRoute("GET", "/folders", list_folders),
        ApiRoute("POST", "/folders", create_folder),
        ApiRoute("GET", "/folders/{name}", folder_info),
        ApiRoute("DELETE", "/folders/{name}", delete_folder),
        ApiRoute("GET", "/folders/{name}/files", list_files),
        ApiRoute("POST", "/folders/{name}/mkdir", mkdir),
        ApiRoute("POST", "/folders/{name}/request-upload", request_upload),
        ApiRoute("POST", "/folders/{name}/request-download", request_download),
        ApiRoute("DELETE", "/folders/{name}/delete-files", delete_files),
        ApiRoute("DELETE", "/folders/{name}/delete_files", delete_files),
        ApiRoute("GET", "/manager/announcement", announcement),
        ApiRoute("POST", "/admin/gql", admin_gql),
    ]
    if profile.files_path_query_only:
        routes.append(ApiRoute("POST", "/folders/{name}/delete-files", delete_files))
    return routes
