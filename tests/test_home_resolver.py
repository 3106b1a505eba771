"""One resolver for the home and `~/.ssh` (`localfs.home_dir`), used by every path sshkit derives.

On Windows, OpenSSH takes `~` from the user's profile directory and ignores HOME (which Git
Bash/MSYS set): the key, the config, known_hosts and the stored logins must all land under
%USERPROFILE% then, never split between the two.
"""

from __future__ import annotations

import ast
import os
import pwd
import sys
from pathlib import Path

import pytest

from sshkit import credentials, localfs, settings
from sshkit.errors import LocalFileError
from sshkit.services import account, authorized_keys, perms, sshconfig_edit, vscode

PKG = Path(__file__).resolve().parent.parent / "sshkit"


@pytest.fixture
def windows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """sys.platform is win32; HOME (as Git Bash sets it) and USERPROFILE differ."""
    msys_home = tmp_path / "msys-home"
    profile = tmp_path / "Users" / "kim"
    monkeypatch.setenv("HOME", str(msys_home))
    monkeypatch.setenv("USERPROFILE", str(profile))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "APPDATA", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    return msys_home, profile


def test_windows_key_config_known_hosts_and_logins_agree_on_the_profile(
    windows_env: tuple[Path, Path],
) -> None:
    msys_home, profile = windows_env
    paths = {
        "key": account.default_key_path("default"),
        "config": sshconfig_edit.default_ssh_config(),
        "known_hosts": vscode.managed_known_hosts(),
        "mux": vscode.control_dir(),
        "ssh_dir(account)": account.ssh_dir(),
        "ssh_dir(authorized_keys)": authorized_keys.ssh_dir(),
        "ssh_dir(perms)": perms._default_ssh_dir(None),
        "login": credentials.login_path("default"),
        "sshkit config": settings.config_dir(),
        "identity ~/": localfs.expand_user("~/.ssh/id_ed25519"),
        "identity ~\\": localfs.expand_user("~\\.ssh\\id_ed25519"),
    }
    ssh = profile / ".ssh"
    assert paths["key"] == ssh / "sshkit" / "default" / "id_container"
    assert paths["config"] == ssh / "config"
    assert paths["known_hosts"] == ssh / "sshkit" / "known_hosts"
    assert paths["mux"] == ssh / "sshkit" / "mux"
    assert paths["ssh_dir(account)"] == paths["ssh_dir(authorized_keys)"] == ssh
    assert paths["ssh_dir(perms)"] == ssh
    assert paths["login"] == profile / "AppData" / "Local" / "sshkit" / "logins" / "default.json"
    assert paths["sshkit config"] == profile / ".config" / "sshkit"
    assert paths["identity ~/"] == ssh / "id_ed25519"
    # (A PosixPath keeps the backslashes inside one name: only the home part is comparable.)
    assert str(paths["identity ~\\"]) == str(profile / ".ssh\\id_ed25519")
    under_home = [k for k, p in paths.items() if p.is_relative_to(msys_home)]
    assert under_home == []


def test_windows_setup_plan_puts_config_and_identity_under_the_profile(
    windows_env: tuple[Path, Path],
) -> None:
    _, profile = windows_env
    opts = vscode.SetupOptions(session="mysess", identity=Path("~/.ssh/id_ed25519"))
    plan = vscode.plan_setup(opts, None)
    assert plan.config.path == profile / ".ssh" / "config"
    assert plan.identity == profile / ".ssh" / "id_ed25519"


def test_windows_rule() -> None:
    env = {"HOME": "/c/msys/kim", "USERPROFILE": r"C:\Users\kim"}
    assert localfs.home_dir(env, "win32") == Path(r"C:\Users\kim")
    assert localfs.ssh_dir(env, "win32") == Path(r"C:\Users\kim") / ".ssh"
    drive = {"HOME": "/c/msys/kim", "HOMEDRIVE": "D:", "HOMEPATH": r"\Users\kim"}
    assert localfs.home_dir(drive, "win32") == Path(r"D:\Users\kim")
    with pytest.raises(LocalFileError):
        localfs.home_dir({"HOME": "/c/msys/kim"}, "win32")


def test_posix_rule_is_home_then_the_password_database() -> None:
    db_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    both = {"HOME": "/home/kim", "USERPROFILE": "/elsewhere"}
    for plat in ("linux", "darwin"):
        assert localfs.home_dir(both, plat) == Path("/home/kim")
        assert localfs.ssh_dir(both, plat) == Path("/home/kim/.ssh")
        assert localfs.home_dir({"USERPROFILE": "/elsewhere"}, plat) == db_home
        assert localfs.home_dir({"HOME": ""}, plat) == db_home


def test_posix_defaults_follow_the_hermetic_home(hermetic_home: Path) -> None:
    assert localfs.home_dir() == hermetic_home
    assert sshconfig_edit.default_ssh_config() == hermetic_home / ".ssh" / "config"
    assert account.default_key_path("p") == hermetic_home / ".ssh" / "sshkit" / "p" / "id_container"
    assert authorized_keys.ssh_dir() == perms._default_ssh_dir(None) == hermetic_home / ".ssh"
    assert localfs.expand_user("~/k") == hermetic_home / "k"


def test_expand_user_leaves_other_paths_alone() -> None:
    env = {"HOME": "/home/kim"}
    assert localfs.expand_user("~", env, "linux") == Path("/home/kim")
    assert localfs.expand_user("~/", env, "linux") == Path("/home/kim")
    assert localfs.expand_user("rel/~/k", env, "linux") == Path("rel/~/k")
    assert localfs.expand_user("/abs/k", env, "linux") == Path("/abs/k")
    # On POSIX a backslash is part of a file name, not a separator.
    assert localfs.expand_user("~\\k", env, "linux") == Path(os.path.expanduser("~\\k"))
    root = pwd.getpwuid(0)
    assert localfs.expand_user(f"~{root.pw_name}/k", env, "linux") == Path(root.pw_dir) / "k"


# Where a home may still be read directly, and why.
_ALLOWED = {
    "localfs.py": "the resolver itself",
    # FileZilla's own rule reads $HOME (fz_paths.cpp), not the profile: mirrored as it is.
    "services/exports.py": "HOME",
    # ssh -G's expansions are compared with Python's expanduser, which takes USERPROFILE on
    # Windows and HOME elsewhere, like the resolver.
    "services/doctor.py": "expanduser",
    # The relay may not import localfs (layering); its --log path is sshkit's own file.
    "relay/log.py": "expanduser",
}


def _home_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("home", "expanduser"):
            found.append(node.attr)
        elif isinstance(node, ast.Constant) and node.value in ("HOME", "USERPROFILE"):
            found.append(str(node.value))
    return found


def test_no_other_module_resolves_the_home() -> None:
    offenders = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        reads = _home_reads(path)
        if rel == "localfs.py":
            continue
        allowed = _ALLOWED.get(rel)
        extra = [r for r in reads if r != allowed]
        if extra:
            offenders[rel] = extra
    assert offenders == {}
