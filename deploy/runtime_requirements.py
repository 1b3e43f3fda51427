"""Print requirements.lock without the packages only the dev group needs (pytest, ruff, mypy, linters).

The lock is made with `uv pip compile pyproject.toml --group dev`, so it pins both; each package's
`# via` comment names what pulls it in: `convbot (pyproject.toml)` for a runtime dependency,
`convbot (pyproject.toml:dev)` for a dev one, or other packages. A package is kept when some chain
of `via`s leads to a runtime dependency. The versions are the lock's, unchanged, so the image gets
exactly what the tests ran with, minus the tools.

    python deploy/runtime_requirements.py requirements.lock > runtime.lock

Standard library only: it runs in the Docker build before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RUNTIME_ROOT = "convbot (pyproject.toml)"
_PACKAGE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*\S+")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """Normalised package name -> (its requirement line, the names in its `# via` comment)."""
    packages: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        match = _PACKAGE.match(raw)
        if match:
            current = _normalise(match.group(1))
            packages[current] = (raw.rstrip(), [])
            in_via = False
            continue
        if current is None or not line.startswith("#"):
            if line and not line.startswith("#"):
                raise ValueError(f"not a pinned requirement: {raw!r}")
            continue
        comment = line.lstrip("#").strip()
        if comment.startswith("via"):
            in_via = True
            comment = comment.removeprefix("via").strip()
        if in_via and comment:
            packages[current][1].append(comment)
    return packages


def runtime_packages(packages: dict[str, tuple[str, list[str]]]) -> set[str]:
    """The packages some chain of `via`s connects to convbot's runtime dependencies."""
    keep: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, (_line, parents) in packages.items():
            if name in keep:
                continue
            if any(parent == RUNTIME_ROOT or _normalise(parent) in keep for parent in parents):
                keep.add(name)
                changed = True
    return keep


def runtime_lock(text: str) -> str:
    packages = parse_lock(text)
    keep = runtime_packages(packages)
    lines = ["# requirements.lock without the dev group's tools (deploy/runtime_requirements.py)"]
    lines += [line for name, (line, _parents) in packages.items() if name in keep]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python deploy/runtime_requirements.py requirements.lock", file=sys.stderr)
        return 2
    sys.stdout.write(runtime_lock(Path(argv[1]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
