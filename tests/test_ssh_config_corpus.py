"""The placement proof: for every config in tests/ssh_configs/, with `ssh -G` as ground truth.

For each corpus file, written as $HOME/.ssh/config (its Include files under $HOME/.ssh/):

* `ssh -G` of every other host (all names the config and its includes mention, plus unrelated
  names) is identical before and after sshkit writes its blocks;
* `ssh -G ALIAS` and `ssh -G NAME.bai` show sshkit's values (first IdentityFile = sshkit's);
* a second run is byte-identical; the file mode is kept;
* removing sshkit's blocks restores the original bytes;
* broken markers and a BOM are refused with nothing written.

`-F` is passed everywhere: ssh finds ~/.ssh/config through the passwd database, not $HOME, while
Include paths (relative to ~/.ssh, or with ~) do follow $HOME (spec §6.3), which is how the
includes below are found in the hermetic home.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from sshkit.errors import SshConfigError
from sshkit.formats.ssh_config import SshConfig, argv_split, split_keyword
from sshkit.services import hosts, sshcheck
from sshkit.services.sshconfig_edit import plan_upsert, verify_candidate, write_plan
from sshkit.services.vscode import SetupOptions, build_blocks, check_effective

CORPUS = Path(__file__).parent / "ssh_configs"
CONFIGS = sorted(p.name for p in CORPUS.glob("*.conf"))
BROKEN = {
    "15-broken-unbalanced.conf",
    "16-broken-duplicated.conf",
    "17-broken-nested.conf",
    "18-broken-end-before-begin.conf",
    "33-bom.conf",
}
ALIAS = "bai-vscode"
SESSION = "demo-session"
LAUNCHER = ["/opt/sshkit tools/bin/sshkit"]  # a space in the path, as on Windows installs
UNRELATED = [
    "example.com",
    "unrelated",
    "web",
    "bai-vscode2",
    "bai-vscodex",
    "x.bai.example",
    "BAI-VSCODE",
]

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


def test_corpus_has_at_least_25_configs() -> None:
    assert len(CONFIGS) >= 25


@pytest.fixture
def ssh_dir() -> Path:
    home = Path(os.environ["HOME"])
    d = home / ".ssh"
    d.mkdir(mode=0o700, exist_ok=True)
    for src in (CORPUS / "include").rglob("*"):
        if src.is_file():
            dst = d / src.relative_to(CORPUS / "include")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
    return d


def _names(data: bytes) -> set[str]:
    """Host names a config (and the include files) mentions, made concrete."""
    texts = [data] + [p.read_bytes() for p in (CORPUS / "include").rglob("*.conf")]
    names: set[str] = set()
    for text in texts:
        if text.startswith(b"\xef\xbb\xbf"):
            continue
        for line in SshConfig.parse(text).lines:
            parsed = split_keyword(line.text)
            if not parsed:
                continue
            key, rest = parsed[0].lower(), parsed[1]
            pats: list[str] = []
            if key == "host":
                pats = argv_split(rest)
            elif key == "match":
                words = argv_split(rest)
                for i, w in enumerate(words[:-1]):
                    if w.lower() in ("host", "originalhost", "!host", "!originalhost"):
                        pats += words[i + 1].split(",")
            for p in pats:
                p = p.lstrip("!")
                names.add(p.replace("*", "zz").replace("?", "q"))
    return names


def other_hosts(data: bytes) -> list[str]:
    names = _names(data) | set(UNRELATED)
    if re.search(rb"(?im)^\s*(match\b.*\b(final|canonical)\b|canonicalizehostname\s+yes)", data):
        # With a final/canonical pass OpenSSH matches Host patterns again against the
        # lowercased name, so BAI-VSCODE *is* the alias there (documented in docs/ssh-config.md).
        names = {n for n in names if n.lower() != ALIAS and not n.lower().endswith(".bai")}
    return sorted(n for n in names if n and n != ALIAS and not n.endswith(".bai"))


def snapshot(config: Path, names: list[str]) -> dict[str, dict[str, list[str]]]:
    return {n: sshcheck.ssh_g(config, n) for n in names}


def setup_blocks(home: Path) -> list:
    opts = SetupOptions(session=SESSION, user="work")
    return build_blocks(opts, home / ".ssh" / "id_container", launcher=LAUNCHER, platform="posix")


def run_setup(config: Path) -> None:
    """What setup-vscode does to the config file (the key/API parts are tested end to end)."""
    blocks = setup_blocks(Path(os.environ["HOME"]))
    plan = plan_upsert(config, blocks, disable_aliases=[ALIAS])
    verify_candidate(plan)
    write_plan(plan)


def without_preexisting_blocks(data: bytes) -> bytes:
    cfg = SshConfig.parse(data)
    for b in cfg.managed_blocks():
        cfg = cfg.remove(b.alias)
    return cfg.render()


@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in BROKEN])
@pytest.mark.parametrize("mode", [0o600])
def test_placement_proof(name: str, mode: int, ssh_dir: Path) -> None:
    original = (CORPUS / name).read_bytes()
    config = ssh_dir / "config"
    config.write_bytes(original)
    os.chmod(config, mode)
    names = other_hosts(original)
    before = snapshot(config, names)

    run_setup(config)
    after_first = config.read_bytes()
    assert after_first != original

    # Every other host: ssh -G identical.
    after = snapshot(config, names)
    for n in names:
        assert after[n] == before[n], f"{name}: ssh -G {n} changed"

    # sshkit's hosts: sshkit's values are the effective ones.
    blocks = setup_blocks(Path(os.environ["HOME"]))
    assert check_effective(config, blocks) == []
    eff = sshcheck.ssh_g(config, ALIAS)
    assert eff["hostname"] == [SESSION]
    assert eff["user"] == ["work"]
    assert eff["identityfile"][0] == str(ssh_dir / "id_container")
    assert eff["identitiesonly"] == ["yes"]
    assert eff["proxycommand"] == ['"/opt/sshkit tools/bin/sshkit" relay -- %h']
    assert eff["stricthostkeychecking"] == ["accept-new"]
    assert eff["userknownhostsfile"] == [str(ssh_dir / "sshkit" / "known_hosts")]
    assert "port" in eff
    newsess = sshcheck.ssh_g(config, "newsess.bai")
    assert newsess["hostname"] == ["newsess.bai"]
    assert newsess["proxycommand"] == ['"/opt/sshkit tools/bin/sshkit" relay --suffix .bai -- %h']
    assert newsess["user"] == ["work"]
    # The hand-written seed-guide block is disabled: none of its leftovers apply.
    if b"Port 49335" in original and b"Host bai-vscode\n" in original:
        assert eff["port"] == ["22"]

    # Second run: byte-identical. Mode kept.
    run_setup(config)
    assert config.read_bytes() == after_first
    assert stat.S_IMODE(config.stat().st_mode) == mode

    # Listing shows both blocks; removing them restores the original.
    listed = hosts.list_hosts(config)
    assert sorted((e.alias, e.session or "", e.kind) for e in listed) == [
        ("*.bai", "", "wildcard"),
        (ALIAS, SESSION, "alias"),
    ]
    hosts.remove_hosts([ALIAS, "*.bai"], config)
    assert config.read_bytes() == without_preexisting_blocks(original)
    assert stat.S_IMODE(config.stat().st_mode) == mode
    if not SshConfig.parse(original).managed_blocks():
        assert config.read_bytes() == original
    assert snapshot(config, names) == before


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_are_refused_and_untouched(name: str, ssh_dir: Path) -> None:
    original = (CORPUS / name).read_bytes()
    config = ssh_dir / "config"
    config.write_bytes(original)
    os.chmod(config, 0o644)
    mtime = config.stat().st_mtime_ns
    with pytest.raises(SshConfigError) as info:
        run_setup(config)
    assert info.value.hint  # tells the user what to do
    with pytest.raises(SshConfigError):
        hosts.remove_hosts([ALIAS], config)
    assert config.read_bytes() == original
    assert config.stat().st_mtime_ns == mtime
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    leftovers = [p.name for p in ssh_dir.iterdir() if p.is_file() and "config" in p.name]
    assert leftovers == ["config"]


def test_missing_config_is_created_0600_and_removal_leaves_empty(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    ssh = home / ".ssh"
    assert not ssh.exists()
    config = ssh / "config"
    run_setup(config)
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert check_effective(config, setup_blocks(home)) == []
    assert not (ssh / "config.sshkit-backup").exists()  # nothing to back up
    hosts.remove_hosts([ALIAS, "*.bai"], config)
    assert config.read_bytes() == b""


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640])
def test_mode_is_kept(mode: int, ssh_dir: Path) -> None:
    config = ssh_dir / "config"
    original = (CORPUS / "08-host-star-first.conf").read_bytes()
    config.write_bytes(original)
    os.chmod(config, mode)
    run_setup(config)
    assert stat.S_IMODE(config.stat().st_mode) == mode
    backup = ssh_dir / "config.sshkit-backup"
    assert backup.read_bytes() == original
    hosts.remove_hosts([ALIAS, "*.bai"], config)
    assert config.read_bytes() == original
    assert stat.S_IMODE(config.stat().st_mode) == mode


def test_symlinked_config_keeps_the_link(ssh_dir: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "ssh_config"
    original = (CORPUS / "07-globals-before-host.conf").read_bytes()
    real.write_bytes(original)
    os.chmod(real, 0o600)
    link = ssh_dir / "config"
    link.symlink_to(real)
    names = other_hosts(original)
    before = snapshot(link, names)
    run_setup(link)
    assert link.is_symlink() and link.resolve() == real
    assert snapshot(link, names) == before
    assert check_effective(link, setup_blocks(Path(os.environ["HOME"]))) == []
    hosts.remove_hosts([ALIAS, "*.bai"], link)
    assert link.is_symlink()
    assert real.read_bytes() == original


def test_custom_config_path(tmp_path: Path, ssh_dir: Path) -> None:
    custom = tmp_path / "elsewhere" / "my_ssh_config"
    custom.parent.mkdir()
    original = (CORPUS / "10-match-all.conf").read_bytes()
    custom.write_bytes(original)
    run_setup(custom)
    assert not (ssh_dir / "config").exists()
    assert check_effective(custom, setup_blocks(Path(os.environ["HOME"]))) == []
    assert [e.config for e in hosts.list_hosts(custom)] == [custom, custom]
    hosts.remove_hosts([ALIAS, "*.bai"], custom)
    assert custom.read_bytes() == original


def test_overridden_value_is_reported(ssh_dir: Path) -> None:
    """A user who moves sshkit's block below a `Host *` is told what no longer applies."""
    config = ssh_dir / "config"
    config.write_bytes(b"")
    run_setup(config)
    text = config.read_text()
    config.write_text("Host *\n    User override\n    ProxyCommand /bin/other %h\n" + text)
    found = check_effective(config, setup_blocks(Path(os.environ["HOME"])))
    keys = {(alias, m.key) for alias, m in found}
    assert (ALIAS, "user") in keys and (ALIAS, "proxycommand") in keys
    assert re.search("override", " ".join(m.actual for _, m in found))


def test_moved_block_is_put_back_on_top(ssh_dir: Path) -> None:
    config = ssh_dir / "config"
    config.write_bytes((CORPUS / "36-sshkit-block-moved-below-star.conf").read_bytes())
    assert check_effective(config, setup_blocks(Path(os.environ["HOME"])))  # overridden now
    run_setup(config)
    assert check_effective(config, setup_blocks(Path(os.environ["HOME"]))) == []
    text = config.read_text()
    assert text.startswith("# BEGIN SSHKIT ")
    assert text.index("# END SSHKIT bai-vscode") < text.index("Host web")


def test_windows_style_block_reads_back_through_ssh_g(ssh_dir: Path) -> None:
    """The Windows quoting (spaces, backslashes in IdentityFile) survives OpenSSH's parser."""
    config = ssh_dir / "config"
    original = (CORPUS / "28-windows-paths.conf").read_bytes()
    config.write_bytes(original)
    opts = SetupOptions(session=SESSION, user="work")
    blocks = build_blocks(
        opts,
        Path("C:\\Users\\Jane Doe\\.ssh\\sshkit\\default\\id_container"),
        launcher=["C:\\Program Files\\sshkit\\sshkit.exe"],
        platform="windows",
        known_hosts=Path("C:\\Users\\Jane Doe\\.ssh\\sshkit\\known_hosts"),
    )
    names = other_hosts(original)
    before = snapshot(config, names)
    plan = plan_upsert(config, blocks, disable_aliases=[ALIAS])
    verify_candidate(plan)
    write_plan(plan)
    assert snapshot(config, names) == before
    assert check_effective(config, blocks) == []
    eff = sshcheck.ssh_g(config, ALIAS)
    assert eff["proxycommand"] == ['"C:/Program Files/sshkit/sshkit.exe" relay -- %h']
    assert eff["identityfile"][0] == "C:\\Users\\Jane Doe\\.ssh\\sshkit\\default\\id_container"
    hosts.remove_hosts([ALIAS, "*.bai"], config)
    assert config.read_bytes() == original
