"""What every process that opens convbot's SQLite file does first: put it in WAL mode, one process at a time.

Switching a database to WAL takes an exclusive lock on it. Two connections that both hold a shared
lock and both ask for the exclusive one would wait for each other for ever, so SQLite answers one of
them "database is locked" at once, without waiting out the busy timeout. That is what happens when
processes start together on a new file (the bot and `convbot db upgrade`, the bot and a cron
`convbot cleanup`, tests): the busy timeout cannot help, so the switch is made under an exclusive
`flock` on a side file (`convbot.db-lock`, beside the `-wal` and `-shm` files) and the processes take
turns. Once the file is in WAL mode the switch changes nothing and the lock is held for microseconds.

The side file is locked rather than the database itself: closing any descriptor of the database
would drop the POSIX locks SQLite holds on it in this process.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

LOCK_SUFFIX = "-lock"


def sqlite_file_path(url: str) -> Path | None:
    """The file a SQLite URL names; None for other databases, in-memory ones and `file:` URIs."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def lock_file_path(database: Path) -> Path:
    return database.with_name(database.name + LOCK_SUFFIX)


def switch_to_wal(dbapi_connection: Any, database: Path) -> str:
    """Put the SQLite file `database`, open on `dbapi_connection`, in WAL mode, waiting for any other
    process doing the same; returns the journal mode in force ("wal" unless the file system refuses it)."""
    with open(lock_file_path(database), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        cursor = dbapi_connection.cursor()
        try:
            return str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        finally:
            cursor.close()
