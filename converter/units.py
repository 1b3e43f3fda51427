"""Sizes as people read them, for every message and table convbot prints."""

from __future__ import annotations


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
