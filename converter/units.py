"""Sizes as people read them, for every message and table convbot prints."""

from __future__ import annotations

from pathlib import Path


def format_size(size: float) -> str:
    """'512 B', '48.8 KB', '12.4 MB', '2.0 GB'."""
    if size < 1024:
        return f"{size:.0f} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def tree_size(folder: Path) -> int:
    """Bytes in the regular files under `folder`; links are not followed."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
