"""Settings resolved once, with provenance, and the `Connection` the API and relay use.

Precedence, highest first (docs/configuration.md):

1. command-line flags;
2. `SSHKIT_*` environment variables;
3. the Backend.AI client's own variables (`BACKEND_ENDPOINT`, `BACKEND_ENDPOINT_TYPE`,
   `BACKEND_ACCESS_KEY`, `BACKEND_SECRET_KEY`, `BACKEND_DOMAIN`,
   `BACKEND_SKIP_SSLCERT_VALIDATION`), so an existing setup works;
4. the config file (`$XDG_CONFIG_HOME/sshkit/config.toml`): the profile's table, then
   top-level keys;
5. the profile's stored login (`sshkit login`);
6. built-in defaults.

No `.env` file is ever loaded. Secrets of a stored login (session id, secret key)
are used only when the resolved endpoint is the endpoint they came from.

Stdlib only: the relay calls `load_connection` on every ssh connection.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sshkit._record import Record
from sshkit.credentials import StoredLogin, check_profile_name, login_path, read_login
from sshkit.errors import ConfigError, NotLoggedInError
from sshkit.localfs import expand_user, home_dir

# `typing` costs the relay about 2 ms per ssh connection; mypy reads this name
# as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    EndpointType: TypeAlias = Literal["session", "api"]

# Every server from 23.09 to main accepts this version (protocol spec §4.2); it is used
# when no probed version is stored for the endpoint.
DEFAULT_API_VERSION = "v7.20230615"
DEFAULT_PROFILE = "default"
DEFAULT_DOMAIN = "default"

# Keys of the config file and of `config show`, in display order.
KEYS = (
    "endpoint",
    "endpoint_type",
    "username",
    "access_key",
    "secret_key",
    "session_id",
    "domain",
    "api_version",
    "insecure",
    "ca_bundle",
)
SECRET_KEYS = frozenset({"secret_key", "session_id"})
_FILE_KEYS = frozenset(KEYS) - {"session_id"}

ENV_NAMES: dict[str, tuple[str, ...]] = {
    "endpoint": ("SSHKIT_ENDPOINT", "BACKEND_ENDPOINT"),
    "endpoint_type": ("SSHKIT_ENDPOINT_TYPE", "BACKEND_ENDPOINT_TYPE"),
    "username": ("SSHKIT_USERNAME",),
    "access_key": ("SSHKIT_ACCESS_KEY", "BACKEND_ACCESS_KEY"),
    "secret_key": ("SSHKIT_SECRET_KEY", "BACKEND_SECRET_KEY"),
    "session_id": (),
    "domain": ("SSHKIT_DOMAIN", "BACKEND_DOMAIN"),
    "api_version": ("SSHKIT_API_VERSION",),
    "insecure": ("SSHKIT_INSECURE", "BACKEND_SKIP_SSLCERT_VALIDATION"),
    "ca_bundle": ("SSHKIT_CA_BUNDLE",),
}
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})
_FALSE = frozenset({"0", "n", "no", "f", "false", "off", ""})


class Connection(Record):
    """Everything needed to talk to one Backend.AI endpoint. Secrets stay out of the repr.

    A frozen `Record` (not a dataclass: the relay loads this module).
    """

    _fields = (
        "endpoint",
        "endpoint_type",
        "access_key",
        "secret_key",
        "session_id",
        "api_version",
        "verify_tls",
        "ca_bundle",
        "profile",
        "domain",
    )
    __slots__ = _fields
    _hidden = frozenset({"secret_key", "session_id"})

    endpoint: str
    endpoint_type: EndpointType
    access_key: str | None
    secret_key: str | None
    session_id: str | None
    api_version: str | None
    verify_tls: bool
    ca_bundle: str | None
    profile: str
    domain: str

    def __init__(
        self,
        endpoint: str,
        endpoint_type: EndpointType,
        access_key: str | None,
        secret_key: str | None,
        session_id: str | None,
        api_version: str | None,
        verify_tls: bool,
        ca_bundle: str | None,
        profile: str,
        domain: str = DEFAULT_DOMAIN,
    ) -> None:
        self._set(
            endpoint=endpoint,
            endpoint_type=endpoint_type,
            access_key=access_key,
            secret_key=secret_key,
            session_id=session_id,
            api_version=api_version,
            verify_tls=verify_tls,
            ca_bundle=ca_bundle,
            profile=profile,
            domain=domain,
        )

    @property
    def hostname(self) -> str:
        """`host[:port]` as the Host header carries it (what API-mode signatures use)."""
        return urlsplit(self.endpoint).netloc

    @property
    def effective_api_version(self) -> str:
        return self.api_version or DEFAULT_API_VERSION


class Setting(Record):
    """One resolved value and where it came from (`flag --endpoint`, `env BACKEND_ENDPOINT`...)."""

    _fields = ("value", "source")
    __slots__ = _fields

    value: str | None
    source: str

    def __init__(self, value: str | None, source: str) -> None:
        self._set(value=value, source=source)


class Settings(Record):
    """The resolved settings of one profile."""

    _fields = ("profile", "values", "config_path", "login_path", "login", "login_used")
    __slots__ = _fields
    _hidden = frozenset({"values", "login"})  # they hold secrets

    profile: Setting
    values: Mapping[str, Setting]
    config_path: Path
    login_path: Path
    login: StoredLogin | None
    login_used: bool

    def __init__(
        self,
        profile: Setting,
        values: Mapping[str, Setting],
        config_path: Path,
        login_path: Path,
        login: StoredLogin | None,
        login_used: bool,
    ) -> None:
        self._set(
            profile=profile,
            values=values,
            config_path=config_path,
            login_path=login_path,
            login=login,
            login_used=login_used,
        )

    def value(self, key: str) -> str | None:
        return self.values[key].value

    @property
    def verify_tls(self) -> bool:
        return not parse_bool(self.value("insecure") or "", "insecure")

    def connection(self) -> Connection:
        """The Connection these settings describe.

        Raises NotLoggedInError when there is no endpoint or no credentials for it.
        """
        endpoint = self.value("endpoint")
        profile = self.profile.value or DEFAULT_PROFILE
        if not endpoint:
            raise NotLoggedInError(
                "not logged in: no endpoint is configured"
                + ("" if profile == DEFAULT_PROFILE else f" for profile {profile!r}"),
                hint="run `sshkit login --endpoint URL` (or set SSHKIT_ENDPOINT)",
            )
        kind: EndpointType = "session" if self.value("endpoint_type") == "session" else "api"
        if kind == "api" and not (self.value("access_key") and self.value("secret_key")):
            raise NotLoggedInError(
                f"not logged in to {endpoint}: no access key and secret key",
                hint="run `sshkit login`, or set BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY",
            )
        if kind == "session" and not self.value("session_id"):
            hint = f"run `sshkit login --endpoint {endpoint} --endpoint-type session`"
            if self.login is not None and not self.login_used:
                hint += f" (the stored login of this profile is for {self.login.endpoint})"
            raise NotLoggedInError(f"not logged in to {endpoint}", hint=hint)
        return Connection(
            endpoint=endpoint,
            endpoint_type=kind,
            access_key=self.value("access_key") if kind == "api" else None,
            secret_key=self.value("secret_key") if kind == "api" else None,
            session_id=self.value("session_id") if kind == "session" else None,
            api_version=self.value("api_version"),
            verify_tls=self.verify_tls,
            ca_bundle=self.value("ca_bundle"),
            profile=profile,
            domain=self.value("domain") or DEFAULT_DOMAIN,
        )


def ca_bundle_path(value: str, environ: Mapping[str, str] | None = None) -> str:
    """The CA setting as an absolute path, with a leading `~` expanded as ssh would.

    The relay runs in whatever directory ssh was started from, and `sshkit login`
    stores the path for it: a relative one would name nothing there, and `~` in a
    config file or an environment variable is not expanded by any shell. Raises
    LocalFileError when `~` cannot be resolved (no home directory).
    """
    return os.path.abspath(expand_user(value, environ))


def parse_bool(text: str, what: str) -> bool:
    """Parse yes/no words as the Backend.AI client does; raise ConfigError otherwise."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{what} must be yes or no, not {text!r}")


def normalize_endpoint(url: str, what: str = "endpoint") -> str:
    """Canonical form of an endpoint URL: lower-case scheme and host, no default port,
    no trailing slash. The first URL of a comma-separated list is used.

    Dropping the default port matters: the signature covers the Host header, and
    `http://h:80` would be signed as `h:80` but sent as `h`. Raises ConfigError.
    """
    url = url.split(",")[0].strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what} {url!r} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{what} {url!r} is not an http(s) URL", hint="for example https://api.example.com"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{what} must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"{what} {url!r} must not have a query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/sshkit`, `~/.config/sshkit`, or the platform equivalent."""
    env = os.environ if environ is None else environ
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "sshkit"
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "sshkit"
    if sys.platform == "darwin":
        return home_dir(env) / "Library" / "Application Support" / "sshkit"
    return home_dir(env) / ".config" / "sshkit"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file: `$SSHKIT_CONFIG` when set, else `config_dir()/config.toml`."""
    env = os.environ if environ is None else environ
    if env.get("SSHKIT_CONFIG"):
        return Path(env["SSHKIT_CONFIG"])
    return config_dir(env) / "config.toml"


def read_config_file(path: Path) -> dict[str, object]:
    """Parse the config file; an absent file is empty. Raises ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    # Imported here: most relays (one per ssh connection) find no config file.
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return data


def _file_table(data: Mapping[str, object], where: str) -> dict[str, str]:
    """Validate one table of the config file and return its settings as strings."""
    out: dict[str, str] = {}
    for key, value in data.items():
        if key in ("profiles", "profile") and where == "top level":
            continue
        if key not in _FILE_KEYS:
            raise ConfigError(f"config file: unknown key {key!r} ({where})")
        if key == "insecure":
            if not isinstance(value, bool):
                raise ConfigError(f"config file: insecure must be true or false ({where})")
            out[key] = "yes" if value else "no"
        elif isinstance(value, str):
            out[key] = value
        else:
            raise ConfigError(f"config file: {key} must be a string ({where})")
    return out


def resolve_settings(
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, str | None] | None = None,
    file_data: Mapping[str, object] | None = None,
    login: StoredLogin | Literal[False] | None = False,
    tls_from_login: bool = True,
) -> Settings:
    """Resolve every setting once, recording its source.

    `flags` maps setting keys to command-line values (None = not given).
    `file_data` and `login` default to reading the config file and the stored
    login. `tls_from_login` False ignores the stored login's `insecure` and
    `ca_bundle` (`sshkit login` must never inherit an old --insecure: the new
    password would go over unverified TLS). Raises ConfigError on malformed values.
    """
    env = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    cfg_path = config_path(env)
    data = read_config_file(cfg_path) if file_data is None else file_data

    if profile:
        prof = Setting(profile, "flag --profile")
    elif env.get("SSHKIT_PROFILE"):
        prof = Setting(env["SSHKIT_PROFILE"], "env SSHKIT_PROFILE")
    elif isinstance(data.get("profile"), str):
        prof = Setting(str(data["profile"]), "config file")
    else:
        prof = Setting(DEFAULT_PROFILE, "default")
    name = check_profile_name(prof.value or DEFAULT_PROFILE)

    top = _file_table(data, "top level")
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError("config file: [profiles] must be a table of tables")
    table = profiles.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file: [profiles.{name}] must be a table")
    own = _file_table(table, f"profile {name!r}")
    stored = read_login(name, env) if login is False else login

    def layered(key: str) -> Setting | None:
        if key in flags:
            return Setting(flags[key], f"flag --{key.replace('_', '-')}")
        for var in ENV_NAMES[key]:
            if env.get(var):
                return Setting(env[var], f"env {var}")
        if key in own:
            return Setting(own[key], f"config file [profiles.{name}]")
        if key in top:
            return Setting(top[key], "config file")
        return None

    values: dict[str, Setting] = {}
    endpoint = layered("endpoint")
    if endpoint is None and stored is not None:
        endpoint = Setting(stored.endpoint, "stored login")
    if endpoint is not None and endpoint.value:
        endpoint = Setting(normalize_endpoint(endpoint.value), endpoint.source)
    values["endpoint"] = endpoint or Setting(None, "not set")

    same_endpoint = stored is not None and stored.endpoint == values["endpoint"].value
    kind = layered("endpoint_type")
    if kind is None and same_endpoint and stored is not None:
        kind = Setting(stored.endpoint_type, "stored login")
    kind = kind or Setting("api", "default")
    if kind.value not in ("session", "api"):
        raise ConfigError(
            f"endpoint type must be 'session' or 'api', not {kind.value!r} ({kind.source})"
        )
    values["endpoint_type"] = kind
    login_used = same_endpoint and stored is not None and stored.endpoint_type == kind.value

    from_login: dict[str, str | None] = {}
    if login_used and stored is not None:
        from_login = {
            "username": stored.username,
            "access_key": stored.access_key,
            "secret_key": stored.secret_key,
            "session_id": stored.session_id,
            "domain": stored.domain,
            "api_version": stored.api_version,
            "insecure": None if stored.verify_tls else "yes",
            "ca_bundle": stored.ca_bundle,
        }
        if not tls_from_login:
            from_login["insecure"] = from_login["ca_bundle"] = None
    defaults: dict[str, str | None] = {
        "domain": DEFAULT_DOMAIN,
        "api_version": DEFAULT_API_VERSION,
        "insecure": "no",
    }
    for key in KEYS[2:]:
        got = layered(key)
        if got is None and from_login.get(key):
            got = Setting(from_login[key], "stored login")
        if got is None and key in defaults:
            got = Setting(defaults[key], "default")
        values[key] = got or Setting(None, "not set")
    bundle = values["ca_bundle"]
    if bundle.value:
        values["ca_bundle"] = Setting(ca_bundle_path(bundle.value, env), bundle.source)
    parse_bool(values["insecure"].value or "", f"insecure ({values['insecure'].source})")
    return Settings(
        profile=Setting(name, prof.source),
        values=values,
        config_path=cfg_path,
        login_path=login_path(name, env),
        login=stored,
        login_used=login_used,
    )


def load_connection(
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, str | None] | None = None,
) -> Connection:
    """Resolve the settings of `profile` and return the Connection they describe.

    Raises NotLoggedInError when no endpoint or credentials are known, and
    ConfigError when a setting or a file is malformed.
    """
    return resolve_settings(profile, environ, flags=flags).connection()
