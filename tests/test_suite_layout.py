"""The suite's own layout: tests/ has no packages, so every test module's basename must be unique.

pytest imports test modules by basename when tests/ has no __init__.py files; a second
``test_x.py`` anywhere under tests/ stops collection of the whole suite.
"""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_basenames_are_unique() -> None:
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if "__pycache__" not in path.parts and path.name != "conftest.py":
            seen[path.name].append(str(path.relative_to(TESTS)))
    dupes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not dupes, f"test modules share a basename (pytest cannot import both): {dupes}"
