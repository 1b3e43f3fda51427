"""The database engine: SQLite (WAL mode) by default, PostgreSQL by URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.sqlite_file import sqlite_file_path, switch_to_wal


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        database = sqlite_file_path(url)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            if database is not None:
                switch_to_wal(connection, database)  # readers do not block the writer
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_database(url: str) -> sessionmaker[Session]:
    """Migrate the database at `url` to the newest schema, then return its session factory.
    Start-up order: the schema is current before anything reads or writes."""
    upgrade(url)
    return make_session_factory(make_engine(url))
