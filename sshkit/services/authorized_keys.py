"""Put the user's own public keys where sessions look for them, merging safely.

Three targets (see docs/authorized-keys.md):

* a user folder named `.ssh` (mounted at `/home/work/.ssh` in new sessions):
  its `authorized_keys` is read with request-download and written with
  request-upload + tus;
* a running session's `~/.ssh/authorized_keys`: read with the session download
  API, written with the session upload API;
* the keypair's SSH key (`/auth/ssh-keypair`), which needs the private key.

Files are merged, never replaced: every existing line is kept byte for byte and
only missing keys are appended (`sshkit.formats.authorized_keys`). There is no
compare-and-swap in these APIs, so after each upload the file is read back, and
read again after a short random pause; when someone else's concurrent write
undid our change, we merge on top of theirs and upload again (bounded).

Returns result objects; never prints.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sshkit import localfs
from sshkit.errors import (
    ApiError,
    KeyFormatError,
    LocalFileError,
    NotFoundError,
    PassphraseError,
    RejectedError,
    ServerError,
    UnsafeDownloadError,
    UsageError,
)
from sshkit.formats import authorized_keys as ak
from sshkit.formats.authorized_keys import AuthorizedKeys, KeyEntry
from sshkit.localfs import read_bytes_if_exists

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient
    from sshkit.api.models import FolderInfo

DEFAULT_FOLDER = ".ssh"
FILE_NAME = "authorized_keys"
SESSION_PATH = ".ssh/authorized_keys"
KUBERNETES_KEY_PATH = ".ssh/id_container"
DEFAULT_PUBLIC_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
MAX_ATTEMPTS = 6
MAX_FILE_BYTES = 1024 * 1024  # an authorized_keys this big is not one sshkit should rewrite
SETTLE_SECONDS = (0.3, 0.7)  # the re-check pause after an upload looked right
BACKOFF_SECONDS = (0.1, 0.6)  # before re-uploading after a lost update
ALTERNATIVES_HINT = (
    "use `sshkit push-authorized-keys --to keypair` (new sessions accept your key) or "
    "`sshkit push-authorized-keys --to session --session NAME` (a running session)"
)


# --- choosing the keys ---------------------------------------------------------------------


def default_public_key(ssh_dir: Path) -> Path:
    """The first of id_ed25519.pub, id_ecdsa.pub, id_rsa.pub in `ssh_dir`.

    Raises LocalFileError when none exists.
    """
    for name in DEFAULT_PUBLIC_KEYS:
        candidate = ssh_dir / name
        if candidate.is_file():
            return candidate
    raise LocalFileError(
        f"no public key given and none of {', '.join(DEFAULT_PUBLIC_KEYS)} exists in {ssh_dir}",
        hint="create one with `ssh-keygen -t ed25519`, or pass PUBKEY_FILE or --key",
    )


def collect_keys(
    files: Sequence[Path], lines: Sequence[str], *, default_dir: Path | None
) -> list[KeyEntry]:
    """Read and validate every key the user named, before anything is sent.

    With no files and no lines, `default_dir` (normally ~/.ssh) supplies the
    default key; pass None to mean "no keys" (e.g. only --remove). Raises
    LocalFileError for unreadable files and KeyFormatError for anything that is
    not an acceptable public key (private keys, malformed lines, weak keys).
    """
    if not files and not lines:
        if default_dir is None:
            return []
        files = [default_public_key(default_dir)]
    keys: list[KeyEntry] = []
    for path in files:
        data = read_bytes_if_exists(path)
        if data is None:
            raise LocalFileError(f"{path} does not exist")
        keys.extend(ak.parse_new_keys(data, source=str(path)))
    for line in lines:
        keys.extend(ak.parse_new_keys(line, source="--key"))
    return keys


# --- where the file lives ------------------------------------------------------------------


class KeysFile(Protocol):
    """One remote authorized_keys file.

    `label` names it in messages; `path` is the short name used in diffs.
    """

    label: str
    path: str

    def read(self) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def write(self, data: bytes) -> None: ...


@dataclass
class FolderFile:
    """`authorized_keys` at the root of a storage folder."""

    client: BackendClient
    folder: str
    label: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or f"{FILE_NAME} in folder {self.folder!r}"
        self.path = self.path or f"{self.folder}/{FILE_NAME}"

    def read(self) -> bytes | None:
        try:
            return self.client.download_file(self.folder, FILE_NAME, max_size=MAX_FILE_BYTES)
        except NotFoundError:
            return None

    def write(self, data: bytes) -> None:
        self.client.upload_file(self.folder, FILE_NAME, data)


@dataclass
class SessionFile:
    """`~/.ssh/authorized_keys` inside a running session."""

    client: BackendClient
    session: str
    label: str = ""
    path: str = f"~/{SESSION_PATH}"

    def __post_init__(self) -> None:
        self.label = self.label or f"~/{SESSION_PATH} in session {self.session!r}"

    def read(self) -> bytes | None:
        try:
            return self.client.download_session_file(self.session, SESSION_PATH)
        except NotFoundError as exc:
            # 404 is the session itself; a missing file comes back as an agent error.
            if exc.status == 404:
                raise
            return None

    def write(self, data: bytes) -> None:
        if self._on_configmap():
            raise RejectedError(
                f"session {self.session!r} runs on a Kubernetes agent, where ~/.ssh is a "
                "ConfigMap mount: its authorized_keys cannot be changed from here",
                hint="push to the keypair instead (new sessions get it), or to a folder",
            )
        self.client.upload_session_file(self.session, SESSION_PATH, data)

    def _on_configmap(self) -> bool:
        """Kubernetes agents put the key at ~/.ssh/id_container, in the mount (spec §14)."""
        try:
            self.client.download_session_file(self.session, KUBERNETES_KEY_PATH)
        except (NotFoundError, ServerError, UnsafeDownloadError):
            return False
        return True


# --- results ---------------------------------------------------------------------------------


@dataclass
class PushResult:
    """What a push did (or, with dry_run, would do)."""

    target: str
    added: list[KeyEntry] = field(default_factory=list)
    already_present: list[KeyEntry] = field(default_factory=list)
    removed: list[KeyEntry] = field(default_factory=list)
    uploaded: bool = False
    uploads: int = 0
    created_folder: bool = False
    folder: str | None = None
    would_create_folder: bool = False
    dry_run: bool = False
    diff: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListResult:
    """The keys of one authorized_keys file (`exists` False: no such file)."""

    target: str
    exists: bool
    document: AuthorizedKeys


# --- the merge-upload-verify loop ------------------------------------------------------------


def push_keys(
    target: KeysFile,
    keys: Sequence[KeyEntry],
    remove: Sequence[str] = (),
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    protected: Iterable[str] = (),
    confirm: Callable[[str], bool] | None = None,
) -> PushResult:
    """Merge `keys` into `target` (and drop the `remove` fingerprints), safely.

    Removing a `protected` fingerprint (the keypair's own key) or the last key sshd
    would accept needs `confirm(reason)` to return True; without `confirm` it is
    refused (UsageError). A key already present on a line whose options restrict
    it is reported in `warnings`.

    Uploads nothing when nothing changes. After each upload the file is read
    back twice (the second time after a short random pause); if a concurrent
    writer undid the change, merges again on top of the newer file, at most
    MAX_ATTEMPTS uploads. Raises UsageError when a --remove fingerprint is not
    in the file, ServerError when the change keeps being undone, and whatever
    the client raises for server failures.
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
    current = target.read()
    base = current or b""
    first = ak.merge(base, keys, remove)
    found = {key.fingerprint for key in first.removed}
    for fp in remove:
        if fp not in found:
            raise UsageError(
                f"no key with fingerprint {fp} in {target.label}",
                hint="see the keys with `sshkit authorized-keys list`",
            )
    result = PushResult(
        target=target.label,
        added=first.added,
        already_present=first.already_present,
        removed=first.removed,
        dry_run=dry_run,
    )
    for holder in first.restricted:
        result.warnings.append(
            f"{holder.fingerprint} is already in {target.label}, on a line whose options"
            f" restrict it ({', '.join(holder.restrictions)})"
        )
    reason = _risky_removal(first, set(protected))
    if reason and not dry_run and (confirm is None or not confirm(reason)):
        raise UsageError(
            f"refusing to remove the key: {reason}",
            hint="run it in a terminal to confirm, or pass --yes",
        )
    if dry_run:
        result.diff = ak.unified_diff(base, first.data, label=target.path)
        return result
    if not first.changed:
        return result
    data, before = first.data, base
    drop = [key.fingerprint for key in first.removed]
    no_effect = 0
    for _attempt in range(MAX_ATTEMPTS):
        target.write(data)
        result.uploads += 1
        result.uploaded = True
        latest = target.read() or b""
        if not ak.missing_after(latest, added=first.added, removed=first.removed):
            sleep(rng.uniform(*SETTLE_SECONDS))
            latest = target.read() or b""
            if not ak.missing_after(latest, added=first.added, removed=first.removed):
                return result
        elif latest == before:
            no_effect += 1
            if no_effect >= 2:
                raise ServerError(
                    f"the server accepted the upload, but {target.label} did not change",
                    hint="a storage folder may be mounted over that path; check with "
                    "`sshkit authorized-keys list`",
                )
        # Someone else's upload replaced ours: build on their file this time.
        data, before = ak.merge(latest, first.added, drop).data, latest
        sleep(rng.uniform(*BACKOFF_SECONDS))
    raise ServerError(
        f"{target.label} kept being overwritten by another client; "
        f"gave up after {MAX_ATTEMPTS} uploads",
        hint="run the command again when the other update has finished",
    )


def _risky_removal(merged: ak.MergeResult, protected: set[str]) -> str | None:
    """Why removing these keys needs a confirmation (None when it does not)."""
    if not merged.removed:
        return None
    own = [key.fingerprint for key in merged.removed if key.fingerprint in protected]
    if own:
        return f"{own[0]} is your keypair's own key (new sessions log in with it)"
    if merged.usable_keys == 0:
        return "no key sshd accepts would be left (nobody could log in with a key)"
    return None


# --- folder target --------------------------------------------------------------------------


def _folder_exists(client: BackendClient, folder: str) -> FolderInfo | None:
    try:
        return client.folder_info(folder)
    except NotFoundError:
        return None


def _refusal(folder: str, exc: ApiError) -> RejectedError:
    detail = exc.msg or exc.title or exc.message
    return RejectedError(
        f"the server refused to create a folder named {folder!r}: {detail} "
        f"(Backend.AI reserves {folder!r} for its own use, so keys cannot be stored there "
        "on this server; nothing was changed)",
        status=exc.status,
        title=exc.title,
        msg=exc.msg,
        error_type=exc.error_type,
        hint=ALTERNATIVES_HINT,
    )


def _is_already_exists(exc: ApiError) -> bool:
    text = f"{exc.error_type or ''} {exc.title or ''} {exc.msg or ''} {exc.message}".lower()
    return "already-exists" in text or "already exists" in text


def ensure_folder(client: BackendClient, folder: str) -> bool:
    """Create the user folder `folder` (read-write) unless it exists; True if created.

    Raises RejectedError (with the alternatives as hint) when the server refuses
    the name, e.g. `.ssh` being reserved.
    """
    if _folder_exists(client, folder) is not None:
        return False
    try:
        client.create_folder(folder)
    except ApiError as exc:
        # A concurrent push may have created it a moment ago.
        if _is_already_exists(exc) and _folder_exists(client, folder) is not None:
            return False
        if exc.status == 400 or isinstance(exc, RejectedError):
            raise _refusal(folder, exc) from None
        raise
    return True


def mode_problem(mode: int) -> str | None:
    """Why sshd would refuse an authorized_keys with this mode, or None when it is fine."""
    if mode & 0o022:
        return (
            f"the server stored {FILE_NAME} with mode {mode & 0o7777:04o}; the session's sshd "
            "refuses a group- or world-writable authorized_keys unless the container "
            "tightens it at start"
        )
    return None


def _mode_warning(client: BackendClient, folder: str) -> str | None:
    try:
        items = client.list_files(folder, "")
    except ApiError:
        return None
    for item in items:
        if item.name == FILE_NAME:
            return mode_problem(item.mode) if item.mode is not None else None
    return None


def push_to_folder(
    client: BackendClient,
    keys: Sequence[KeyEntry],
    remove: Sequence[str] = (),
    *,
    folder: str = DEFAULT_FOLDER,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    protected: Iterable[str] = (),
    confirm: Callable[[str], bool] | None = None,
) -> PushResult:
    """Merge keys into `folder`/authorized_keys, creating the folder when needed.

    Raises RejectedError when the server refuses to create the folder (nothing
    is changed then) or the folder is read-only, NotFoundError when only
    removing from a folder that does not exist, plus push_keys' errors.
    """
    info = _folder_exists(client, folder)
    target = FolderFile(client, folder)
    if info is None:
        if not keys:
            raise NotFoundError(f"there is no folder named {folder!r}", hint=ALTERNATIVES_HINT)
        if dry_run:
            result = push_keys(_Missing(target.label, target.path), keys, remove, dry_run=True)
            result.would_create_folder = True
            result.folder = folder
            return result
        created = ensure_folder(client, folder)
        result = push_keys(target, keys, remove, sleep=sleep, protected=protected, confirm=confirm)
        result.created_folder = created
        result.folder = folder
    else:
        if info.permission == "ro":
            raise RejectedError(
                f"the folder {folder!r} is read-only for you", hint=ALTERNATIVES_HINT
            )
        result = push_keys(
            target,
            keys,
            remove,
            dry_run=dry_run,
            sleep=sleep,
            protected=protected,
            confirm=confirm,
        )
    if result.uploaded:
        warning = _mode_warning(client, folder)
        if warning:
            result.warnings.append(warning)
    return result


@dataclass
class _Missing:
    """A file that does not exist yet and must not be written (dry runs)."""

    label: str
    path: str

    def read(self) -> bytes | None:
        return None

    def write(self, data: bytes) -> None:  # pragma: no cover - dry runs never write
        raise AssertionError("dry run tried to write")


# --- session target ---------------------------------------------------------------------------


def push_to_session(
    client: BackendClient,
    session: str,
    keys: Sequence[KeyEntry],
    remove: Sequence[str] = (),
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    protected: Iterable[str] = (),
    confirm: Callable[[str], bool] | None = None,
) -> PushResult:
    """Merge keys into the running session's ~/.ssh/authorized_keys.

    Raises NotFoundError for an unknown session, plus push_keys' errors.
    """
    return push_keys(
        SessionFile(client, session),
        keys,
        remove,
        dry_run=dry_run,
        sleep=sleep,
        protected=protected,
        confirm=confirm,
    )


# --- listing --------------------------------------------------------------------------------


def list_folder_keys(client: BackendClient, folder: str = DEFAULT_FOLDER) -> ListResult:
    """The keys in `folder`/authorized_keys. Raises NotFoundError without the folder."""
    if _folder_exists(client, folder) is None:
        raise NotFoundError(f"there is no folder named {folder!r}", hint=ALTERNATIVES_HINT)
    target = FolderFile(client, folder)
    data = target.read()
    return ListResult(target.label, data is not None, AuthorizedKeys.parse(data or b""))


def list_session_keys(client: BackendClient, session: str) -> ListResult:
    """The keys in a running session's ~/.ssh/authorized_keys."""
    target = SessionFile(client, session)
    data = target.read()
    return ListResult(target.label, data is not None, AuthorizedKeys.parse(data or b""))


# --- keypair target --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeypairPlan:
    """A checked key pair ready to become the keypair SSH key (private part not in repr)."""

    public: KeyEntry
    public_line: str
    private_path: Path
    private_pem: str = field(repr=False)
    current_fingerprint: str | None = None


def private_key_path(public_path: Path) -> Path:
    """`id_x.pub` -> `id_x`; UsageError when the name does not end in .pub."""
    if public_path.suffix != ".pub":
        raise UsageError(
            f"{public_path} does not end in .pub, so its private key cannot be found",
            hint="pass the public key file whose private key sits next to it without .pub",
        )
    return public_path.with_suffix("")


def plan_keypair(
    client: BackendClient,
    public_path: Path,
    *,
    passphrase: Callable[[], bytes | None] | None = None,
) -> KeypairPlan:
    """Check a local key pair and prepare it for `/auth/ssh-keypair`.

    The private key is re-encoded as unencrypted PEM (traditional for RSA and
    ECDSA, PKCS#8 for Ed25519), which is what servers validate with
    `load_pem_private_key`. `passphrase` is asked only for an encrypted key.
    Raises LocalFileError, KeyFormatError (bad, weak or mismatched keys),
    PassphraseError.
    """
    from sshkit.formats import keys as keyfmt

    (public,) = _single_key(public_path)
    private_path = private_key_path(public_path)
    data = read_bytes_if_exists(private_path)
    if data is None:
        raise LocalFileError(f"the private key {private_path} does not exist")
    try:
        private = keyfmt.load_private_key(data, None)
    except PassphraseError:
        secret = passphrase() if passphrase is not None else None
        if secret is None:
            raise
        private = keyfmt.load_private_key(data, secret)
    if private.public_blob != public.blob:
        raise KeyFormatError(f"{private_path} is not the private key of {public_path}")
    pem = _unencrypted_pem(keyfmt.cryptography_key(private.params))
    current = current_keypair_fingerprint(client)
    return KeypairPlan(
        public=public,
        public_line=public.public_line(),
        private_path=private_path,
        private_pem=pem,
        current_fingerprint=current,
    )


def _single_key(public_path: Path) -> list[KeyEntry]:
    data = read_bytes_if_exists(public_path)
    if data is None:
        raise LocalFileError(f"{public_path} does not exist")
    found = ak.parse_new_keys(data, source=str(public_path))
    if len(found) != 1:
        raise UsageError(f"{public_path} holds {len(found)} keys; the keypair takes exactly one")
    if found[0].options:
        raise UsageError(f"{public_path} has authorized_keys options; give a plain .pub file")
    return found


def _unencrypted_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.PKCS8
    else:  # policy already refused DSA; Ed448 has no OpenSSH support
        raise KeyFormatError("this key type cannot be used as the keypair SSH key")
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return pem.decode("ascii")


def current_keypair_fingerprint(client: BackendClient) -> str | None:
    """The fingerprint of the keypair's SSH public key, or None when it has none."""
    text = client.get_ssh_keypair().ssh_public_key
    if text is None:
        return None
    try:
        return ak.parse_new_keys(text, source="the keypair's SSH key")[0].fingerprint
    except KeyFormatError:
        return None


def upload_keypair(client: BackendClient, plan: KeypairPlan) -> PushResult:
    """Replace the keypair SSH key with `plan`'s pair and check the server took it.

    Raises RejectedError when the server refuses the pair, ServerError when it
    then reports a different public key.
    """
    label = "the keypair's SSH key"
    if plan.current_fingerprint == plan.public.fingerprint:
        return PushResult(target=label, already_present=[plan.public])
    try:
        client.set_ssh_keypair(plan.public_line + "\n", plan.private_pem)
    except ApiError as exc:
        if exc.status == 400:
            raise RejectedError(
                f"the server refused the key pair: {exc.msg or exc.title or exc.message}",
                status=exc.status,
                title=exc.title,
                msg=exc.msg,
                error_type=exc.error_type,
            ) from None
        raise
    if current_keypair_fingerprint(client) != plan.public.fingerprint:
        raise ServerError("the server did not keep the uploaded key pair")
    return PushResult(target=label, added=[plan.public], uploaded=True, uploads=1)


def ssh_dir() -> Path:
    """~/.ssh of the current user (`localfs.ssh_dir`). Raises LocalFileError."""
    return localfs.ssh_dir()
