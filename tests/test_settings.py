"""Settings precedence, provenance, profiles, and endpoint binding of stored logins."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshkit.credentials import StoredLogin, delete_login, login_path, read_login, write_login
from sshkit.errors import ConfigError, NotLoggedInError
from sshkit.settings import (
    DEFAULT_API_VERSION,
    config_path,
    load_connection,
    normalize_endpoint,
    resolve_settings,
)


def env_with(home: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        **extra,
    }


def write_config(env: dict[str, str], text: str) -> Path:
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


SESSION_LOGIN = StoredLogin(
    endpoint="http://127.0.0.1:8000",
    endpoint_type="session",
    access_key="AKSESSION",
    session_id="sid-secret",
    api_version="v8.20240915",
    username="user@example.com",
)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HTTP://Example.COM:80/", "http://example.com"),
        ("https://example.com:443/api/", "https://example.com/api"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("http://a.example, http://b.example", "http://a.example"),
    ],
)
def test_normalize_endpoint(raw: str, normal: str) -> None:
    assert normalize_endpoint(raw) == normal


@pytest.mark.parametrize(
    "bad", ["ftp://x", "example.com", "http://u:p@h", "http://h/?q=1", "http://h:99999", ""]
)
def test_normalize_endpoint_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalize_endpoint(bad)


def test_precedence_flag_env_backend_file(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    write_config(env, 'endpoint = "http://file.example"\ndomain = "filedom"\n')
    s = resolve_settings(environ=env)
    assert (s.value("endpoint"), s.values["endpoint"].source) == (
        "http://file.example",
        "config file",
    )
    env["BACKEND_ENDPOINT"] = "http://backend.example"
    assert resolve_settings(environ=env).values["endpoint"].source == "env BACKEND_ENDPOINT"
    env["SSHKIT_ENDPOINT"] = "http://sshkit.example"
    s = resolve_settings(environ=env)
    assert s.value("endpoint") == "http://sshkit.example"
    assert s.values["endpoint"].source == "env SSHKIT_ENDPOINT"
    s = resolve_settings(environ=env, flags={"endpoint": "http://flag.example", "domain": None})
    assert s.values["endpoint"].source == "flag --endpoint"
    assert s.value("domain") == "filedom"
    assert s.values["endpoint_type"].source == "default" and s.value("endpoint_type") == "api"


def test_profiles_and_top_level_defaults(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    write_config(
        env,
        'profile = "work"\nendpoint_type = "session"\n'
        '[profiles.work]\nendpoint = "http://work.example"\n'
        '[profiles.lab]\nendpoint = "http://lab.example"\nendpoint_type = "api"\n',
    )
    s = resolve_settings(environ=env)
    assert s.profile.value == "work" and s.profile.source == "config file"
    assert s.value("endpoint") == "http://work.example"
    assert s.values["endpoint"].source == "config file [profiles.work]"
    assert s.value("endpoint_type") == "session"
    lab = resolve_settings("lab", environ=env)
    assert lab.value("endpoint_type") == "api" and lab.profile.source == "flag --profile"
    env["SSHKIT_PROFILE"] = "lab"
    assert resolve_settings(environ=env).value("endpoint") == "http://lab.example"


@pytest.mark.parametrize(
    "text",
    [
        "endpoint = [",
        "bogus = 1",
        "endpoint = 3",
        "insecure = 'maybe'",
        "[profiles]\ndefault = 3",
        'endpoint_type = "cookie"',
    ],
)
def test_malformed_config_is_a_config_error(hermetic_home: Path, text: str) -> None:
    env = env_with(hermetic_home)
    write_config(env, text)
    with pytest.raises(ConfigError):
        resolve_settings(environ=env)


def test_bad_profile_name_is_refused(hermetic_home: Path) -> None:
    with pytest.raises(ConfigError):
        resolve_settings("../x", environ=env_with(hermetic_home))


def test_api_mode_from_backend_env_alone(hermetic_home: Path) -> None:
    env = env_with(
        hermetic_home,
        BACKEND_ENDPOINT="http://127.0.0.1:8090/",
        BACKEND_ACCESS_KEY="AK",
        BACKEND_SECRET_KEY="SK",
        BACKEND_SKIP_SSLCERT_VALIDATION="yes",
    )
    conn = load_connection(environ=env)
    assert conn.endpoint == "http://127.0.0.1:8090"
    assert conn.endpoint_type == "api"
    assert (conn.access_key, conn.secret_key) == ("AK", "SK")
    assert conn.verify_tls is False
    assert conn.api_version == DEFAULT_API_VERSION
    assert conn.hostname == "127.0.0.1:8090"


def test_not_logged_in(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    with pytest.raises(NotLoggedInError, match="no endpoint"):
        load_connection(environ=env)
    env["BACKEND_ENDPOINT"] = "http://h"
    with pytest.raises(NotLoggedInError, match="no access key"):
        load_connection(environ=env)
    env["BACKEND_ENDPOINT_TYPE"] = "session"
    with pytest.raises(NotLoggedInError, match="not logged in to http://h"):
        load_connection(environ=env)


def test_stored_login_round_trip_is_private(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    path = write_login("default", SESSION_LOGIN, env)
    assert path == login_path("default", env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_login("default", env) == SESSION_LOGIN
    assert "sid-secret" not in repr(SESSION_LOGIN)
    assert delete_login("default", env) is True
    assert read_login("default", env) is None
    assert delete_login("default", env) is False


def test_corrupt_stored_login(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    path = write_login("default", SESSION_LOGIN, env)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        read_login("default", env)


def test_stored_login_is_used_for_its_own_endpoint(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    write_login("default", SESSION_LOGIN, env)
    s = resolve_settings(environ=env)
    assert s.values["endpoint"].source == "stored login"
    conn = s.connection()
    assert conn.endpoint_type == "session"
    assert conn.session_id == "sid-secret"
    assert conn.api_version == "v8.20240915"
    # the same endpoint spelled differently still matches
    env["SSHKIT_ENDPOINT"] = "HTTP://127.0.0.1:8000/"
    assert load_connection(environ=env).session_id == "sid-secret"


def test_stored_session_id_never_goes_to_another_endpoint(hermetic_home: Path) -> None:
    env = env_with(hermetic_home, SSHKIT_ENDPOINT="http://127.0.0.1:9000")
    write_login("default", SESSION_LOGIN, env)
    s = resolve_settings(environ=env)
    assert s.value("session_id") is None
    assert s.value("api_version") == DEFAULT_API_VERSION
    env["SSHKIT_ENDPOINT_TYPE"] = "session"
    with pytest.raises(NotLoggedInError) as info:
        load_connection(environ=env)
    assert "http://127.0.0.1:8000" in (info.value.hint or "")
    assert "sid-secret" not in str(info.value) + (info.value.hint or "")


def test_stored_api_keys_not_used_when_type_differs(hermetic_home: Path) -> None:
    env = env_with(hermetic_home)
    api_login = StoredLogin(
        endpoint="http://127.0.0.1:8090", endpoint_type="api", access_key="AK", secret_key="SK"
    )
    write_login("default", api_login, env)
    assert load_connection(environ=env).secret_key == "SK"
    env["SSHKIT_ENDPOINT_TYPE"] = "session"
    s = resolve_settings(environ=env)
    assert s.value("secret_key") is None and not s.login_used


def test_env_keys_override_stored_keys(hermetic_home: Path) -> None:
    env = env_with(hermetic_home, BACKEND_SECRET_KEY="ENVSK")
    write_login(
        "default",
        StoredLogin(endpoint="http://h", endpoint_type="api", access_key="AK", secret_key="SK"),
        env,
    )
    s = resolve_settings(environ=env)
    assert s.value("secret_key") == "ENVSK"
    assert s.values["secret_key"].source == "env BACKEND_SECRET_KEY"
    assert s.values["access_key"].source == "stored login"


def test_default_environ_is_os_environ(
    hermetic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSHKIT_ENDPOINT", "http://from-os-env")
    assert resolve_settings().value("endpoint") == "http://from-os-env"
    assert os.environ["XDG_CONFIG_HOME"] in str(resolve_settings().config_path)


def test_dotenv_is_never_loaded(
    hermetic_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "SSHKIT_ENDPOINT=http://dotenv\nBACKEND_ENDPOINT=http://dotenv\n"
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_settings().value("endpoint") is None


@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
    host=st.from_regex(
        r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True
    ),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.from_regex(r"(/[a-z0-9_-]{1,8}){0,3}/?", fullmatch=True),
)
def test_normalize_endpoint_is_idempotent(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    once = normalize_endpoint(url)
    assert normalize_endpoint(once) == once
    assert once == once.lower() or path != path.lower()
    assert not once.endswith("/")
    assert ":80/" not in once + "/" or once.startswith("https")


def test_ca_bundle_paths_are_absolute_with_the_home_expanded(
    hermetic_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay runs where ssh was started: a relative path or a `~` from a config
    # file or the environment (no shell expands those) would name nothing there.
    env = env_with(hermetic_home, SSHKIT_CA_BUNDLE="~/corp/ca.pem")
    assert resolve_settings(environ=env).value("ca_bundle") == str(hermetic_home / "corp/ca.pem")
    monkeypatch.chdir(tmp_path)
    s = resolve_settings(environ=env_with(hermetic_home), flags={"ca_bundle": "certs"})
    assert s.value("ca_bundle") == str(tmp_path / "certs")
    assert s.values["ca_bundle"].source == "flag --ca-bundle"
    write_config(env_with(hermetic_home), 'ca_bundle = "~/ca-dir"\n')
    assert resolve_settings(environ=env_with(hermetic_home)).value("ca_bundle") == str(
        hermetic_home / "ca-dir"
    )
