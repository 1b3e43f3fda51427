"""Alembic's environment, configured in code by db.migrate: the URL comes in `config.attributes["url"]`
(or a ready connection in `config.attributes["connection"]`), never from an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from db.migrate import COMPARE_OPTIONS, lock_for_migration, migration_engine, verify_after_migration
from db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations through db.migrate (e.g. db.migrate.upgrade(url))")
    return str(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        **COMPARE_OPTIONS,
    )


def run_migrations_offline() -> None:
    """`--sql` mode: print the SQL instead of running it."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        **COMPARE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """One transaction for the whole upgrade; concurrent upgrades of the same database wait for it."""
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = migration_engine(_url())
    try:
        with engine.connect() as connection, connection.begin():
            lock_for_migration(connection)
            _configure(connection)  # after begin(): Alembic runs inside this transaction
            before = context.get_context().get_current_heads()
            context.run_migrations()
            if context.get_context().get_current_heads() != before:
                verify_after_migration(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
