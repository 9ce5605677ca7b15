"""Imports run one way: ffcommon at the bottom, the parts on it, the fireflyer glue on top.

Walks every import (module level and inside functions) of every shipped package with ``ast`` and
fails, naming file and line, when a part (fs3, haiplatform, hfreduce) imports ``fireflyer``, when
``ffcommon`` imports a part or the glue, or when a module imports another package's ``_private``
module or name. Tests are white-box tests of their own part and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "ffcommon"
PARTS = ("fs3", "haiplatform", "hfreduce")
GLUE = "fireflyer"
PACKAGES = (BASE, *PARTS, GLUE)


def _private(name: str) -> bool:
    """``_x`` is private; dunders (``__version__``) are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module imported, names imported from it) for every import in ``tree``."""
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([target] if target else [])])
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def violations(root: Path = ROOT) -> list[str]:
    """Every import of the packages under ``root`` that breaks the layering, as ``file:line: why``."""
    found: list[str] = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            module = _module_name(root, path)
            tree = ast.parse(path.read_text(), str(path))
            where = path.relative_to(root)
            for line, target, names in _imports(tree, module, path.name == "__init__.py"):
                top = target.split(".")[0]
                if top not in PACKAGES:
                    continue
                if pkg in PARTS and top == GLUE:
                    found.append(f"{where}:{line}: part {pkg} imports the glue ({target})")
                if pkg == BASE and top != BASE:
                    found.append(f"{where}:{line}: {BASE} imports {target}, above it")
                if top == pkg:
                    continue
                private = [p for p in target.split(".")[1:] if _private(p)]
                private += [n for n in names if _private(n)]
                if private:
                    found.append(f"{where}:{line}: imports {target}'s private {', '.join(private)}")
    return found


def test_packages_import_only_downwards_and_only_public_names():
    found = violations()
    assert not found, "layering violations:\n" + "\n".join(found)


def _plant(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_rule_catches_a_planted_violation(tmp_path):
    for pkg in PACKAGES:
        _plant(tmp_path, f"{pkg}/__init__.py", "")
    _plant(tmp_path, "fs3/cluster.py", "from fireflyer.launcher import Launcher\n")
    _plant(tmp_path, "haiplatform/web/openapi.py", "def f():\n    import fireflyer\n")
    _plant(tmp_path, "ffcommon/db.py", "from fs3 import errors\n")
    _plant(tmp_path, "fireflyer/backend.py", "from hfreduce._bootstrap import StoreExchange\n")
    _plant(tmp_path, "fireflyer/info.py", "from hfreduce import _cuda\n")
    _plant(
        tmp_path, "fs3/ok.py", "from fs3 import _rpc\nfrom ffcommon import __version__\nfrom . import _rpc\n"
    )
    _plant(tmp_path, "hfreduce/up.py", "from ..fireflyer import cli\n")
    found = violations(tmp_path)
    assert len(found) == 6, found
    for where in ("fs3/cluster.py:1", "haiplatform/web/openapi.py:2", "ffcommon/db.py:1"):
        assert any(f.startswith(where) for f in found), (where, found)
    assert any("hfreduce._bootstrap's private _bootstrap" in f for f in found), found
    assert any("private _cuda" in f for f in found), found
    assert not any(f.startswith("fs3/ok.py") for f in found), found


def test_importing_a_part_loads_no_glue_and_fs3_no_launcher():
    """``import fs3`` (every client, the FUSE daemon) stays light: no process launcher, no fireflyer."""
    import subprocess
    import sys

    code = (
        "import sys, fs3, haiplatform, hfreduce; "
        "print(sorted(m for m in sys.modules if m.startswith('fireflyer') or m == 'ffcommon.launcher'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
