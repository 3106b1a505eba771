"""Imports flow one way: cli → services → api | relay | formats | localfs | settings → errors.

Checked on the source (every import statement, also those inside functions, which
is where the heavy ones live), so a lazy import cannot hide a wrong direction.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sshkit"
STDLIB = set(sys.stdlib_module_names)

# For each layer: the sshkit packages/modules and third-party roots it may import.
RULES: dict[str, tuple[set[str], set[str]]] = {
    "formats": ({"sshkit.errors", "sshkit.formats"}, {"cryptography", "argon2", "bcrypt"}),
    "api": ({"sshkit.errors", "sshkit.settings", "sshkit.api"}, {"requests", "urllib3"}),
    "relay": (
        # The api modules that are stdlib-only (checked below): the tunnel request and
        # the one mapping of server answers to errors.
        {
            "sshkit.errors",
            "sshkit.settings",
            "sshkit.api.tunnel",
            "sshkit.api.problems",
            "sshkit.relay",
            "sshkit._record",
        },
        {"websockets"},
    ),
    "settings": (
        {"sshkit.errors", "sshkit.credentials", "sshkit.localfs", "sshkit._record"},
        set(),
    ),
    "credentials": ({"sshkit.errors", "sshkit.localfs", "sshkit._record"}, set()),
    "_record": (set(), set()),
    "localfs": ({"sshkit.errors"}, set()),
    "errors": (set(), set()),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def allowed(name: str, own: set[str], third_party: set[str]) -> bool:
    root = name.split(".")[0]
    if root == "sshkit":
        return name in ("sshkit", "sshkit.__version__") or any(
            name == p or name.startswith(p + ".") for p in own
        )
    return root in STDLIB or root in third_party or root == "__future__"


SOURCES = sorted(p for p in PKG.rglob("*.py") if layer_of(p) in RULES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_only_its_layer_and_below(path: Path) -> None:
    own, third_party = RULES[layer_of(path)]
    bad = sorted(
        n
        for n in imports_of(path)
        if not allowed(n, own, third_party)
        # `from sshkit.formats import keys` names both the package and the module.
        and not any(n.startswith(o + ".") for o in own)
    )
    assert bad == [], f"{path.relative_to(PKG)} imports {bad} against the layering"


def test_services_never_import_the_cli() -> None:
    for path in (PKG / "services").rglob("*.py"):
        assert not any(n.startswith("sshkit.cli") for n in imports_of(path)), path


def test_stdlib_only_modules_on_the_relay_path() -> None:
    for name in (
        "api/auth.py",
        "api/tunnel.py",
        "api/problems.py",
        "settings.py",
        "credentials.py",
    ):
        third = {n.split(".")[0] for n in imports_of(PKG / name)} - STDLIB - {"sshkit"}
        assert third <= {"__future__"}, f"{name} imports {third}"
