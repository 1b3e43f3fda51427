"""Database fixtures, on SQLite and on a real PostgreSQL server (registered in tests/conftest.py).

    postgres_server     session-wide: a private PostgreSQL 15 on 127.0.0.1 (or CONVBOT_TEST_POSTGRES_URL's server)
    database_url        per test, params "sqlite" and "postgresql": a fresh database at the newest revision
    empty_database_url  per test, the same params: a database never migrated (SQLite: no file yet)
    session_factory     per test: db.session's sessionmaker on database_url; its engine is disposed at teardown

The private server is initialised with initdb in a temporary folder and started with pg_ctl, both as
the `postgres` user when the tests run as root (PostgreSQL refuses to run as root), with trust auth on
loopback only and durability turned off: it is thrown away at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

PG_BIN = Path(os.environ.get("CONVBOT_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
EXTERNAL_URL_VARIABLE = "CONVBOT_TEST_POSTGRES_URL"
INSTALL_HINT = (
    "PostgreSQL 15 is needed for the database tests (both backends are tested, nothing is skipped): "
    "install it with `apt-get update && apt-get install -y postgresql` (Debian 12), "
    f"or point {EXTERNAL_URL_VARIABLE} at a server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)"
)


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    url: URL  # of its maintenance database, with the psycopg (3) driver
    started_in_seconds: float  # 0.0 for an external server

    def database_url(self, name: str) -> URL:
        return self.url.set(database=name)


def _psycopg(url: URL) -> URL:
    """`postgresql://` means psycopg2 to SQLAlchemy; the project installs psycopg 3."""
    return url.set(drivername="postgresql+psycopg") if url.drivername in ("postgresql", "postgres") else url


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        pytest.fail(
            "running as root, and runuser (util-linux) is missing to run PostgreSQL as `postgres`", pytrace=False
        )
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}", pytrace=False
        )


def _start_private_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        pytest.fail(f"{initdb} not found. {INSTALL_HINT}", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="convbot-pg-"))  # in /tmp: pytest's own tmp folders are root-only (0700)
    data = root / "data"
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail(f"running as root and there is no `postgres` user. {INSTALL_HINT}", pytrace=False)
    started = time.monotonic()
    try:
        settings = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        _run(_as_postgres([str(initdb), "-D", str(data), *settings]), "initdb")
        port = 0
        for _attempt in range(3):  # another process may take the free port between finding and binding it
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{root}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            done = subprocess.run(
                _as_postgres(
                    [str(pg_ctl), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"]
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode == 0:
                break
        else:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            pytest.fail(f"pg_ctl start failed: {done.stdout}\n{done.stderr}\n{log}", pytrace=False)
        elapsed = time.monotonic() - started
        try:
            yield PostgresServer(
                URL.create("postgresql+psycopg", "postgres", None, "127.0.0.1", port, "postgres"), elapsed
            )
        finally:
            subprocess.run(
                _as_postgres([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=120,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session: CONVBOT_TEST_POSTGRES_URL's, or a private one started here."""
    external = os.environ.get(EXTERNAL_URL_VARIABLE)
    if external:
        yield PostgresServer(_psycopg(make_url(external)), 0.0)
    else:
        yield from _start_private_server()


@contextmanager
def _postgres_database(server: PostgresServer) -> Iterator[str]:
    name = f"convbot_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.database_url(name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:  # FORCE: a connection a test left open must not keep it alive
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def _fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'convbot.db'}"  # the folder does not exist yet: upgrade makes it
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        with _postgres_database(server) as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for this test that was never migrated, on each backend (SQLite: not even created)."""
    with _fresh_database(request, tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for this test, migrated to the newest revision, on each backend."""
    from db.migrate import upgrade

    with _fresh_database(request, tmp_path) as url:
        upgrade(url)
        yield url


@pytest.fixture
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on `database_url`, made as the application makes them (db.session)."""
    from db.session import make_engine, make_session_factory

    engine = make_engine(database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
