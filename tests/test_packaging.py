"""What a user installing the wheel, or a distribution packaging the sdist, gets.

The build runs from a clone made with `core.symlinks=false` (what Windows checkouts
do), with `python -m build --no-isolation` so no package registry is needed: the
build back end comes from the test venv. The clone is of HEAD, so commit before
trusting this test with packaging changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.emulator_fixture import Emulator

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.name for p in (ROOT / "sshkit" / "templates").iterdir())

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(wheel, sdist, build output) built from a core.symlinks=false clone of HEAD."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    work = tmp_path_factory.mktemp("build")
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "-C", str(clone), "-c", "core.symlinks=false", "checkout", "-q", head], check=True
    )
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(clone)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist, proc.stdout + proc.stderr


def test_the_build_prints_no_deprecation_warning(dist: tuple[Path, Path, str]) -> None:
    output = dist[2]
    assert not re.search(r"deprecat", output, re.IGNORECASE), output
    # setuptools frames each of its warnings with "!!" lines.
    assert "\n!!" not in output and "  !!" not in output, output


def test_the_wheel_holds_the_templates_and_the_license(dist: tuple[Path, Path, str]) -> None:
    with zipfile.ZipFile(dist[0]) as wheel:
        names = set(wheel.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = wheel.read(meta).decode()
        for name in TEMPLATES:
            data = wheel.read(f"sshkit/templates/{name}")
            assert data == (ROOT / "sshkit" / "templates" / name).read_bytes()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in headers
    assert not any(n.startswith("tests/") for n in names)


def test_the_sdist_ships_no_partial_test_tree(dist: tuple[Path, Path, str]) -> None:
    with tarfile.open(dist[1]) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    assert "LICENSE" in names
    assert {f"sshkit/templates/{t}" for t in TEMPLATES} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_top_level_templates_are_the_packaged_ones() -> None:
    """The top-level `templates/` (linked from the docs) is the package's directory."""
    top = ROOT / "templates"
    assert top.is_symlink() and top.resolve() == (ROOT / "sshkit" / "templates").resolve()
    assert not (ROOT / "sshkit" / "templates").is_symlink()


def requirement(name: str) -> str:
    reqs = metadata.requires("sshkit") or []
    (req,) = [r for r in reqs if re.match(rf"{re.escape(name)}\b", r) and "extra ==" not in r]
    return req


def test_websockets_is_capped_at_the_tested_major_version() -> None:
    """The relay uses websockets names outside its documented API: each major is tested first."""
    installed = int(metadata.version("websockets").split(".")[0])
    assert f"<{installed + 1}" in requirement("websockets").replace(" ", "")
    # The names the relay relies on, at the installed (tested) version.
    from websockets.client import ClientProtocol
    from websockets.http11 import Response
    from websockets.speedups import apply_mask
    from websockets.sync.client import reconnect
    from websockets.sync.utils import Deadline

    assert all((ClientProtocol, Response, apply_mask, reconnect, Deadline))


def test_every_imported_distribution_is_declared() -> None:
    for name in ("typer", "requests", "urllib3", "cryptography", "paramiko", "websockets"):
        assert requirement(name)
    assert not [r for r in metadata.requires("sshkit") or [] if r.startswith("argon2-cffi")
                and "extra ==" not in r]  # fmt: skip


@pytest.fixture()
def wheel_venv(dist: tuple[Path, Path, str], tmp_path: Path) -> Path:
    """A fresh venv with only the built wheel installed (dependencies: the test venv's)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The wheel goes in by pip (console script included), with no index and no
    # dependencies; these come from the test venv, appended after the new venv's
    # site-packages so that the wheel's sshkit, not the editable one, is imported.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", "--disable-pip-version-check", str(dist[0])],
        check=True, capture_output=True,
    )  # fmt: skip
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_the_installed_wheel_exports_putty_against_the_emulator(
    wheel_venv: Path, emulator: Emulator, tmp_path: Path
) -> None:
    from tests.test_exports import parse_reg

    where = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", "import sshkit; print(sshkit.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(wheel_venv)), where
    sshkit = wheel_venv / "bin" / "sshkit"
    out = tmp_path / "s.reg"
    proc = subprocess.run(
        [str(sshkit), "export", "putty", emulator.session, "-o", str(out)],
        capture_output=True, text=True, env=emulator.sshkit_api_env(), timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (values,) = parse_reg(out.read_bytes()).values()
    assert values["HostName"] == emulator.session
    assert str(values["ProxyTelnetCommand"]).startswith(str(sshkit))
    assert Path(str(values["PublicKeyFile"])).read_bytes().startswith(b"PuTTY-User-Key-File-3")
