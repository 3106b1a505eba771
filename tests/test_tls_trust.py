"""The TLS trust store: a CA directory for `--ca-bundle`, and the system store read lazily.

`ssl.create_default_context()` parses the whole system bundle on every relay (about
20 ms of CPU); a directory of OpenSSL hash links is read one certificate at a time,
as a handshake looks one up. Real TLS throughout: a self-signed server certificate,
hashed directories made by `openssl rehash`, the relay as a subprocess, and real ssh
through the emulator behind a TLS front.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sshkit.api.tunnel import lazy_system_store, ssl_context
from sshkit.credentials import read_login
from sshkit.errors import ExitCode, NetworkError
from sshkit.relay.log import RelayLog
from sshkit.relay.ws import TunnelTarget, WebSocketChannel, open_channel
from tests.emulator_fixture import EmulatorFactory
from tests.relay_e2e_support import Client, session_home, sshkit_argv
from tests.relay_fakes import FakeTunnelServer, hashed_ca_dir, self_signed_cert, serving
from tests.test_relay_cli import hot_path_offenders, imported_modules

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command (scripts/_setup.sh)"
)

RETRIED = "retrying with the whole system store"
LAZY = "TLS: the system store, read lazily from"


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the machine's environment: the direct path unless a test sets one."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def tls_server(tmp_path: Path, no_proxy: None) -> Iterator[tuple[FakeTunnelServer, Path]]:
    """A TLS tunnel server for `localhost` with a self-signed certificate; (server, cert)."""
    cert, key = self_signed_cert(_fresh(tmp_path / "server"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeTunnelServer(ssl_context=context).running() as server:
        yield server, cert


@pytest.fixture
def other_cert(tmp_path: Path) -> Path:
    """A certificate that does not sign the server's: a store holding only it refuses it."""
    # Another name too: OpenSSL tells self-signed certificates apart by subject.
    return self_signed_cert(_fresh(tmp_path / "other"), "other.example")[0]


def _fresh(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def relay_log(tmp_path: Path) -> Iterator[tuple[RelayLog, Path]]:
    """The relay's log, and the file it writes."""
    path = tmp_path / "relay.log"
    log = RelayLog(str(path))
    try:
        yield log, path
    finally:
        log.close()


def _lines(log: Path, text: str) -> int:
    return sum(text in line for line in log.read_text().splitlines())


# --- which store: the decision ---------------------------------------------------------


@pytest.fixture
def hash_named(tmp_path: Path) -> Path:
    """A directory with an OpenSSL hash link's name in it (the decision reads names only)."""
    directory = _fresh(tmp_path / "certs")
    (directory / "ca-certificates.crt").write_text("")
    (directory / "5ad8a5d6.0").write_text("")
    return directory


def test_a_hashed_system_directory_is_read_lazily(hash_named: Path) -> None:
    assert lazy_system_store(environ={}, platform="linux", capath=str(hash_named)) == str(
        hash_named
    )


@pytest.mark.parametrize(
    "environ",
    [{"SSL_CERT_FILE": "/x/ca.pem"}, {"SSL_CERT_DIR": "/x/certs"}, {"SSL_CERT_FILE": ""}],
)
def test_openssl_environment_variables_keep_the_eager_store(
    hash_named: Path, environ: dict[str, str]
) -> None:
    # They replace OpenSSL's default paths: the default directory is not the store then.
    assert lazy_system_store(environ=environ, platform="linux", capath=str(hash_named)) is None


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_windows_and_macos_keep_the_eager_store(hash_named: Path, platform: str) -> None:
    # The stdlib reads the system's own store there, not OpenSSL's directory.
    assert lazy_system_store(environ={}, platform=platform, capath=str(hash_named)) is None


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["ca-bundle.crt", "tls-ca-bundle.pem", "README"],
        ["5ad8a5d6.r0", "5AD8A5D6.0", "5ad8a5d.0", "5ad8a5d6.", "5ad8a5d6.0x", "5ad8a5d6"],
    ],
)
def test_a_directory_without_hash_links_keeps_the_eager_store(
    tmp_path: Path, names: list[str]
) -> None:
    directory = _fresh(tmp_path / "certs")
    for name in names:
        (directory / name).write_text("")
    assert lazy_system_store(environ={}, platform="linux", capath=str(directory)) is None


def test_a_missing_directory_keeps_the_eager_store(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    assert lazy_system_store(environ={}, platform="linux", capath=missing) is None


def test_the_default_directory_is_openssls() -> None:
    default = ssl.get_default_verify_paths().openssl_capath
    links = [p for p in Path(default).glob("*") if re.fullmatch(r"[0-9a-f]{8}\.[0-9]+", p.name)]
    expected = default if links else None
    assert lazy_system_store(environ={}, platform="linux") == expected


def test_the_system_store_is_consulted_only_when_it_is_used(
    tls_server: tuple[FakeTunnelServer, Path],
) -> None:
    # A CA bundle of the login, --insecure and ws:// have no use for the system store.
    server, cert = tls_server
    url = server.url("echo", host="localhost")
    asked: list[str] = []

    def store() -> str | None:
        asked.append("asked")
        return None

    target = TunnelTarget("echo")
    open_channel(url, {}, target, timeout=5, ca_bundle=str(cert), system_store=store).abort()
    open_channel(url, {}, target, timeout=5, verify_tls=False, system_store=store).abort()
    with FakeTunnelServer().running() as plain:
        open_channel(plain.url("echo"), {}, target, timeout=5, system_store=store).abort()
    assert asked == []
    # Verified wss:// without a CA bundle: asked once (None: the eager store, no retry).
    with pytest.raises(NetworkError):
        open_channel(url, {}, target, timeout=5, system_store=store)
    assert asked == ["asked"]


# --- a CA directory ----------------------------------------------------------------------


@needs_openssl
def test_a_ca_directory_verifies_the_server(
    tls_server: tuple[FakeTunnelServer, Path], tmp_path: Path, other_cert: Path
) -> None:
    server, cert = tls_server
    url = server.url("echo", host="localhost")
    trusted = hashed_ca_dir(tmp_path / "trusted", other_cert, cert)
    channel = open_channel(url, {}, TunnelTarget("echo"), timeout=5, ca_bundle=str(trusted))
    channel.send(b"over tls, CA directory")
    assert channel.recv() == b"over tls, CA directory"
    channel.abort()

    # A directory without the server's CA refuses it, like a bundle file would.
    untrusted = hashed_ca_dir(tmp_path / "untrusted", other_cert)
    with pytest.raises(NetworkError) as info:
        open_channel(url, {}, TunnelTarget("echo"), timeout=5, ca_bundle=str(untrusted))
    assert "TLS certificate of localhost could not be verified" in info.value.message
    assert "--ca-bundle FILE` (or DIRECTORY)" in (info.value.hint or "")


def test_ssl_context_keeps_the_stdlib_defaults(tmp_path: Path, hash_named: Path) -> None:
    eager = ssl.create_default_context()
    for ctx in (ssl_context(system_capath=str(hash_named)), ssl_context(ca_bundle=str(hash_named))):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.verify_flags == eager.verify_flags
        assert ctx.options == eager.options
        assert ctx.minimum_version == eager.minimum_version
        # Read lazily: nothing is parsed until a handshake looks a certificate up.
        assert ctx.cert_store_stats()["x509_ca"] == 0
    insecure = ssl_context(False, system_capath=str(hash_named))
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


# --- the lazy system store and its safety net -------------------------------------------


@contextmanager
def connect_proxy() -> Iterator[tuple[int, list[str]]]:
    """An HTTP CONNECT proxy on 127.0.0.1; (port, the CONNECT targets it was asked for)."""
    targets: list[str] = []

    def tunnel(client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                more = client.recv(4096)
                if not more:
                    return
                head += more
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            targets.append(f"{method} {target}")
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
                pump.start()
                _copy(client, upstream)
                pump.join(10)

    with serving(tunnel) as port:
        yield port, targets


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        if isinstance(dst, ssl.SSLSocket):
            dst.close()
        else:
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def open_with_store(
    server: FakeTunnelServer, app: str, store: Path, log: RelayLog
) -> WebSocketChannel:
    """The relay's `open_channel` to `app`, with `store` as the lazy system store."""
    return open_channel(
        server.url(app, host="localhost"),
        {},
        TunnelTarget(app),
        timeout=5,
        log=log,
        system_store=lambda: str(store),
    )


@contextmanager
def maybe_proxy(path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """For path "proxy", a CONNECT proxy in HTTPS_PROXY (the `websockets` path)."""
    if path == "direct":
        yield []
        return
    with connect_proxy() as (port, targets):
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        yield targets


@needs_openssl
@pytest.mark.parametrize("path", ["direct", "proxy"])
def test_a_lazy_store_with_the_certificate_connects_at_once(
    tls_server: tuple[FakeTunnelServer, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    relay_log: tuple[RelayLog, Path],
    path: str,
) -> None:
    server, cert = tls_server
    store = hashed_ca_dir(tmp_path / "system", cert)
    log, log_path = relay_log
    with maybe_proxy(path, monkeypatch) as asked:
        channel = open_with_store(server, "echo", store, log)
        channel.send(b"lazy")
        assert channel.recv() == b"lazy"
        channel.abort()
    assert _lines(log_path, f"{LAZY} {store}") == 1
    assert _lines(log_path, RETRIED) == 0
    assert asked == ([] if path == "direct" else [f"CONNECT localhost:{server.port}"])


@needs_openssl
@pytest.mark.parametrize("path", ["direct", "proxy"])
def test_a_lazy_store_out_of_step_falls_back_to_the_whole_store(
    tls_server: tuple[FakeTunnelServer, Path],
    tmp_path: Path,
    other_cert: Path,
    monkeypatch: pytest.MonkeyPatch,
    relay_log: tuple[RelayLog, Path],
    path: str,
) -> None:
    # The hashed directory lacks the server's CA; the whole store (here SSL_CERT_FILE,
    # which `ssl.create_default_context()` loads) has it: the relay must connect.
    server, cert = tls_server
    store = hashed_ca_dir(tmp_path / "system", other_cert)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    log, log_path = relay_log
    with maybe_proxy(path, monkeypatch) as asked:
        channel = open_with_store(server, "greet", store, log)
        assert channel.recv() == b"HELLO\n"
        channel.abort()
    text = log_path.read_text()
    assert _lines(log_path, RETRIED) == 1, text
    assert "certificate verify failed" in text or "self-signed" in text, text
    assert "websocket open" in text
    assert asked == ([] if path == "direct" else [f"CONNECT localhost:{server.port}"] * 2)


@needs_openssl
def test_both_stores_refusing_is_one_error_after_one_retry(
    tls_server: tuple[FakeTunnelServer, Path],
    tmp_path: Path,
    other_cert: Path,
    monkeypatch: pytest.MonkeyPatch,
    relay_log: tuple[RelayLog, Path],
) -> None:
    server, _ = tls_server
    store = hashed_ca_dir(tmp_path / "system", other_cert)
    monkeypatch.setenv("SSL_CERT_FILE", str(other_cert))
    log, log_path = relay_log
    with pytest.raises(NetworkError) as info:
        open_with_store(server, "echo", store, log)
    assert "TLS certificate of localhost could not be verified" in info.value.message
    assert "--ca-bundle" in (info.value.hint or "")
    assert _lines(log_path, RETRIED) == 1
    assert server.connections == 0  # both handshakes failed before any upgrade


# --- the relay as users run it -----------------------------------------------------------


def _relay_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        SSHKIT_ENDPOINT=endpoint,
        SSHKIT_ENDPOINT_TYPE="api",
        SSHKIT_ACCESS_KEY="AKTEST",
        SSHKIT_SECRET_KEY="not-a-real-secret",
    )
    env.update(extra)
    return env


@needs_openssl
def test_the_relay_over_wss_with_a_ca_directory(
    tls_server: tuple[FakeTunnelServer, Path], tmp_path: Path, other_cert: Path
) -> None:
    server, cert = tls_server
    trusted = hashed_ca_dir(tmp_path / "trusted", other_cert, cert)
    log = tmp_path / "relay.log"
    env = _relay_env(
        f"https://localhost:{server.port}", SSHKIT_CA_BUNDLE=str(trusted), SSHKIT_LOG=str(log)
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sshkit", "relay", "greet"],
        input=b"",
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout == b"HELLO\n"
    assert hot_path_offenders(imported_modules(proc.stderr)) == []
    text = log.read_text()
    assert f"connecting to wss://localhost:{server.port}/stream/session/greet/tcpproxy" in text
    assert LAZY not in text  # a CA directory of the login is not the system store


def test_the_relay_reads_the_system_store_lazily_and_retries_it_whole(
    tls_server: tuple[FakeTunnelServer, Path], tmp_path: Path
) -> None:
    # The machine's own store, as a user's relay sees it (no SSL_CERT_* variables): it
    # does not hold the self-signed certificate, so both attempts refuse it.
    system = lazy_system_store(environ={})
    if system is None:
        pytest.skip("this machine's OpenSSL directory has no hash links")
    server, _ = tls_server
    log = tmp_path / "relay.log"
    env = _relay_env(f"https://localhost:{server.port}", SSHKIT_LOG=str(log))
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sshkit", "relay", "greet"],
        input=b"",
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == ExitCode.NETWORK
    assert proc.stdout == b""
    errors = [
        line for line in proc.stderr.decode().splitlines() if not line.startswith("import time:")
    ]
    assert errors[0].startswith(
        "sshkit: error: TLS certificate of localhost could not be verified"
    ), errors
    assert hot_path_offenders(imported_modules(proc.stderr)) == []
    assert _lines(log, f"{LAZY} {system}") == 1
    assert _lines(log, RETRIED) == 1


@contextmanager
def tls_front(target_port: int, cert: Path, key: Path) -> Iterator[int]:
    """TLS on a local port in front of the plain `target_port` (as a real webserver's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def serve(raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            client = context.wrap_socket(raw, server_side=True)
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", target_port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            raw.close()
            return
        pump = threading.Thread(target=_copy, args=(client, upstream), daemon=True)
        pump.start()
        _copy(upstream, client)
        pump.join(30)
        client.close()
        upstream.close()

    with serving(serve) as port:
        yield port


@needs_openssl
def test_login_with_a_ca_directory_and_ssh_through_the_relay_over_tls(
    emulator_factory: EmulatorFactory, tmp_path: Path, other_cert: Path, no_proxy: None
) -> None:
    """`sshkit login --ca-bundle DIR` against the emulator behind TLS; then real ssh
    through the relay over wss://, trusting the directory the login stored."""
    emu = emulator_factory()
    cert, key = self_signed_cert(_fresh(tmp_path / "server"))
    trusted = hashed_ca_dir(tmp_path / "trusted", other_cert, cert)
    webserver_port = int(emu.webserver_url.rsplit(":", 1)[1].split("/")[0])
    with tls_front(webserver_port, cert, key) as port:
        env = dict(os.environ)
        login = subprocess.run(
            [
                *sshkit_argv(),
                "login",
                "--endpoint",
                f"https://localhost:{port}",
                "--endpoint-type",
                "session",
                "--username",
                emu.username,
                "--password-stdin",
                "--ca-bundle",
                str(trusted),
            ],
            input=emu.password.encode(),
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert login.returncode == 0, login.stderr.decode()
        ssh_key = tmp_path / "id_container"
        shutil.copyfile(session_home(emu, emu.session) / "id_container", ssh_key)
        ssh_key.chmod(0o600)
        client = Client(emu=emu, mode="session", env=env, key=ssh_key)
        log = tmp_path / "relay.log"
        proc = client.run(client.ssh(emu.session, "echo", "over-wss", extra=f"--log-file {log}"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"over-wss\n"
    assert f"connecting to wss://localhost:{port}/func/stream/session/" in log.read_text()


# --- CA certificates that cannot be used: one line, exit 3, nothing stored -------------


def _unusable(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Unusable CA certificates, and the reason each is refused with."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    unhashed = _fresh(tmp_path / "unhashed")
    (unhashed / "ca.pem").write_text("")
    return {
        "missing": (tmp_path / "nowhere.pem", "No such file or directory"),
        "garbage": (garbage, "no PEM certificate in it"),
        "unhashed": (unhashed, "the directory holds no OpenSSL hash links (`openssl rehash DIR`)"),
    }


@pytest.mark.parametrize("kind", ["missing", "garbage", "unhashed"])
def test_the_relay_refuses_unusable_ca_certificates_in_one_line(
    tls_server: tuple[FakeTunnelServer, Path], tmp_path: Path, kind: str
) -> None:
    server, _ = tls_server
    path, reason = _unusable(tmp_path)[kind]
    env = _relay_env(f"https://localhost:{server.port}", SSHKIT_CA_BUNDLE=str(path))
    proc = subprocess.run(
        [*sshkit_argv(), "relay", "greet"], input=b"", capture_output=True, timeout=60, env=env
    )
    assert proc.returncode == ExitCode.CONFIG, proc.stderr.decode()
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        f"sshkit: error: cannot use the CA certificates {path}: {reason}",
        "sshkit: hint: set them with `sshkit login --ca-bundle FILE` (or DIRECTORY),"
        " or SSHKIT_CA_BUNDLE",
    ]
    assert server.connections == 0


@pytest.mark.parametrize("kind", ["missing", "garbage", "unhashed"])
def test_login_refuses_unusable_ca_certificates_and_stores_nothing(
    tls_server: tuple[FakeTunnelServer, Path], tmp_path: Path, kind: str
) -> None:
    server, _ = tls_server
    path, reason = _unusable(tmp_path)[kind]
    proc = subprocess.run(
        [
            *sshkit_argv(),
            "login",
            "--endpoint",
            f"https://localhost:{server.port}",
            "--username",
            "u@x",
            "--password-stdin",
            "--ca-bundle",
            str(path),
        ],
        input=b"a-password",
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == ExitCode.CONFIG, proc.stderr.decode()
    assert f"sshkit: error: cannot use the CA certificates {path}: {reason}" in (
        proc.stderr.decode().splitlines()
    )
    assert "Traceback" not in proc.stderr.decode()
    assert read_login("default") is None
    assert server.requests == []
