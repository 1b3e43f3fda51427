"""The layers of docs/design.md, enforced: edges (bot/, cli/) -> jobs/ -> converter/, db/ beside jobs; the bot
reaches the database only through the jobs layer; the edges never import TensorFlow themselves; no package
imports tests/ or bench/, and bench/ does not import tests/.

Every import counts, at the top of a module or inside a function or `if TYPE_CHECKING:`: a lazy import from a layer
above is still a dependency on it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_THE_PACKAGES = ("tests", "bench")
# What the modules under each folder may not import. bench/ uses the packages, but not the tests.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The bot asks the jobs layer (jobs/catalog.py) and holds no database session; TensorFlow runs only in
    # the converter's processes.
    "bot": ("db", "sqlalchemy", "alembic", "tensorflow", "tensorflowjs", "keras", *OUTSIDE_THE_PACKAGES),
    "cli": ("tensorflow", "tensorflowjs", "keras", *OUTSIDE_THE_PACKAGES),
    "jobs": ("bot", "cli", *OUTSIDE_THE_PACKAGES),
    "db": ("bot", "cli", "jobs", "converter", *OUTSIDE_THE_PACKAGES),
    "converter": ("bot", "cli", "jobs", "db", *OUTSIDE_THE_PACKAGES),
    "bench": ("tests",),
}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file at `path`."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, _absolute(node, package)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def layer_violations() -> list[str]:
    found = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                if top in forbidden:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({layer} may not import {top})")
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert layer_violations() == []
