"""The job database on SQLite and on PostgreSQL: migrations, records, and several processes writing at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.models import Artifact, Job, JobStatus, UploadedModel, User
from db.session import make_engine
from tests.db import workers

TABLES = {"users", "uploaded_models", "jobs", "artifacts"}
BIG_TELEGRAM_ID = 2**40 + 12345  # above 2**31: needs BIGINT on PostgreSQL


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _add_user_and_model(factory: sessionmaker[Session], telegram_id: int = BIG_TELEGRAM_ID) -> tuple[int, int]:
    with factory.begin() as session:
        user = User(telegram_id=telegram_id, name="Ada", language="en")
        model = UploadedModel(
            user=user,
            sha256="ab" * 32,
            size=3 * 2**32,  # above 2**31 too
            format="saved_model",
            original_name="model.zip",
            storage_path="/data/models/abab.zip",
            summary=_summary(),
        )
        session.add(model)
        session.flush()
        return user.id, model.id


def _summary() -> dict[str, Any]:
    """An inspection summary of a few KB, as the converter writes it."""
    nodes = [
        {"name": f"block_{i}/conv2d/Conv2D", "op": "Conv2D", "shape": [1, 56, 56, 64], "dtype": "float32"}
        for i in range(40)
    ]
    return {
        "format": "saved_model",
        "signatures": {
            "serving_default": {"inputs": {"image": [None, 224, 224, 3]}, "outputs": {"logits": [None, 10]}}
        },
        "nodes": nodes,
        "ops": {"Conv2D": 40, "Relu": 40, "MatMul": 1},
        "note": "ünïcödé ✓",
    }


# --- migrations ---------------------------------------------------------------------------------------------------


def test_upgrade_creates_the_tables_and_they_match_the_models(empty_database_url: str) -> None:
    url = empty_database_url
    assert migrate.current_revision(url) is None

    migrate.upgrade(url)

    assert _tables(url) == TABLES | {"alembic_version"}
    assert migrate.current_revision(url) == migrate.head_revision() is not None
    assert migrate.check(url) == []


def test_check_reports_an_unmigrated_database(empty_database_url: str) -> None:
    problems = migrate.check(empty_database_url)
    assert problems
    if empty_database_url.startswith("postgresql"):  # the database exists, empty: every table is missing
        assert any("newest is" in problem for problem in problems)
        assert {f"add_table: table {table}" for table in TABLES} <= set(problems)


def test_check_reports_a_difference(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_jobs_cache_key"))
    finally:
        engine.dispose()
    assert migrate.check(database_url) == ["add_index: index ix_jobs_cache_key (cache_key)"]


def test_the_schema_follows_the_naming_convention(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            schema = inspect(connection)
            foreign_keys = {fk["name"] for table in TABLES for fk in schema.get_foreign_keys(table)}
            indexes = {index["name"] for table in TABLES for index in schema.get_indexes(table)}
            uniques = {uq["name"] for uq in schema.get_unique_constraints("users")}
            primary_keys = {schema.get_pk_constraint(table)["name"] for table in TABLES}
    finally:
        engine.dispose()
    assert foreign_keys == {
        "fk_uploaded_models_user_id_users",
        "fk_jobs_user_id_users",
        "fk_jobs_model_id_uploaded_models",
        "fk_jobs_cached_from_job_id_jobs",
        "fk_artifacts_job_id_jobs",
    }
    assert {"ix_jobs_cache_key", "ix_jobs_status_created_at", "ix_artifacts_job_id"} <= indexes
    assert uniques == {"uq_users_telegram_id"}
    if database_url.startswith("postgresql"):  # SQLite keeps no name for an INTEGER PRIMARY KEY
        assert primary_keys == {f"pk_{table}" for table in TABLES}


def test_upgrading_again_changes_nothing(database_url: str, session_factory: sessionmaker[Session]) -> None:
    user_id, model_id = _add_user_and_model(session_factory)
    revision = migrate.current_revision(database_url)

    migrate.upgrade(database_url)
    migrate.upgrade(database_url)

    assert migrate.current_revision(database_url) == revision
    assert migrate.check(database_url) == []
    with session_factory() as session:
        assert session.get(UploadedModel, model_id) is not None
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.get(User, user_id) is not None


def test_downgrade_to_nothing_and_up_again(database_url: str) -> None:
    command.downgrade(migrate.alembic_config(database_url), "base")
    assert _tables(database_url) == {"alembic_version"}
    assert migrate.current_revision(database_url) is None

    migrate.upgrade(database_url)
    assert migrate.check(database_url) == []


def test_concurrent_upgrades_wait_for_each_other(empty_database_url: str) -> None:
    """The bot and the service start together: both upgrade the same new database, one after the other."""
    _run_in_processes(workers.upgrade, empty_database_url)
    assert _tables(empty_database_url) == TABLES | {"alembic_version"}
    assert migrate.check(empty_database_url) == []


# --- SQLite specifics ---------------------------------------------------------------------------------------------

STARTING_TOGETHER = ("upgrade", "write", "read_revision")  # the bot or `convbot db upgrade`; cleanup; doctor
START_ROUNDS = 40


def test_many_processes_start_together_on_new_sqlite_files(tmp_path: Path) -> None:
    """Nine processes start at the same moment on a new SQLite file, 40 times over (a new file each time): three
    migrate it, three open it and write a job, three read its revision, as the bot, `convbot db upgrade`, a cron
    `convbot cleanup` and `convbot doctor` may. Every one of them must succeed. Switching a new file to WAL used
    to fail one of them with "database is locked" in most runs of this test (SQLite does not wait out the busy
    timeout where two connections could deadlock), never when the switch is serialised."""
    files = [tmp_path / f"round{number}" / "convbot.db" for number in range(START_ROUNDS)]
    roles = [(role,) for role in STARTING_TOGETHER for _ in range(3)]

    _run_in_processes(workers.start_on_new_files, str(tmp_path), [str(path) for path in files], each=roles)

    for path in files:
        url = f"sqlite:///{path}"
        assert migrate.check(url) == [], path
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3,)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_is_in_wal_mode_with_foreign_keys_on(database_url: str, session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert Path(database_url.removeprefix("sqlite:///")).is_file()


def test_upgrade_makes_the_sqlite_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'convbot.db'}"
    migrate.upgrade(url)
    assert (tmp_path / "deep" / "er" / "convbot.db").is_file()
    assert migrate.check(url) == []


# --- records ------------------------------------------------------------------------------------------------------


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(Job(user_id=999, model_id=999, cache_key="x" * 64))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_records_round_trip_through_relationships(session_factory: sessionmaker[Session]) -> None:
    user_id, model_id = _add_user_and_model(session_factory)
    with session_factory.begin() as session:
        job = Job(
            user_id=user_id,
            model_id=model_id,
            targets=["tflite", "tfjs"],
            inputs=["image"],
            outputs=["logits", "embedding"],
            shapes={"image": [1, 224, 224, 3]},
            tflite_quantization="float16",
            cache_key="cd" * 32,
            status=JobStatus.SUCCEEDED.value,
            timings={"convert": 1.25, "validate": 0.5},
            tool_versions={"tensorflow": "2.19.0", "tensorflowjs": "4.22.0"},
            result={"validation": [{"output": "logits", "max_abs_diff": 1.5e-6, "ok": True}]},
        )
        job.artifacts = [
            Artifact(kind="tflite", file_name="model.tflite", path="/a/model.tflite", size=1234, sha256="1" * 64),
            Artifact(kind="tfjs", file_name="model_web.zip", path="/a/model_web.zip", size=5678, sha256="2" * 64),
        ]
        session.add(job)
        session.flush()
        job_id = job.id

    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert job.user.telegram_id == BIG_TELEGRAM_ID
        assert job.model.summary == _summary()
        assert job.model.size == 3 * 2**32
        assert job.targets == ["tflite", "tfjs"]
        assert job.shapes == {"image": [1, 224, 224, 3]}
        assert job.result["validation"][0]["max_abs_diff"] == 1.5e-6
        assert job.tool_versions["tensorflow"] == "2.19.0"
        assert [(a.kind, a.file_name, a.size) for a in job.artifacts] == [
            ("tflite", "model.tflite", 1234),
            ("tfjs", "model_web.zip", 5678),
        ]
        assert all(artifact.job is job for artifact in job.artifacts)
        assert isinstance(job.created_at, datetime) and job.created_at.tzinfo is None
        assert job.finished_at is None and job.cached_from_job_id is None

        found = session.scalars(select(User).where(User.telegram_id == BIG_TELEGRAM_ID)).one()
        assert found.id == user_id


def test_telegram_id_is_unique(session_factory: sessionmaker[Session]) -> None:
    _add_user_and_model(session_factory)
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(User(telegram_id=BIG_TELEGRAM_ID))


def test_telegram_ids_up_to_the_bigint_limit(session_factory: sessionmaker[Session]) -> None:
    ids = [2**31, 2**53 + 1, 2**63 - 1, -(2**40)]  # Telegram chat ids of groups are negative
    with session_factory.begin() as session:
        session.add_all(User(telegram_id=telegram_id) for telegram_id in ids)
    with session_factory() as session:
        assert list(session.scalars(select(User.telegram_id).order_by(User.telegram_id))) == sorted(ids)


# --- several processes --------------------------------------------------------------------------------------------


def _run_in_processes(
    target: Any, url: str, *args: Any, processes: int = 2, each: Sequence[tuple[Any, ...]] = ()
) -> None:
    """Run `target(url, barrier, errors, *args)` in `processes` spawned processes, or one process per tuple of
    `each`, appended to the arguments; fail on any error in them."""
    context = multiprocessing.get_context("spawn")
    own_args = list(each) or [()] * processes
    barrier, errors = context.Barrier(len(own_args)), context.Queue()
    children = [context.Process(target=target, args=(url, barrier, errors, *args, *own)) for own in own_args]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=240)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    for child in children:
        if child.is_alive():
            child.kill()
            problems.append(f"process {child.pid} still running after 240 s")
        elif child.exitcode != 0:
            problems.append(f"process {child.pid} exited with {child.exitcode}")
    assert not problems, "\n".join(problems)


def test_two_processes_write_at_once(database_url: str, session_factory: sessionmaker[Session]) -> None:
    """SQLite: WAL and the busy timeout let two writers take turns, never 'database is locked'."""
    user_id, model_id = _add_user_and_model(session_factory)

    _run_in_processes(workers.write_jobs, database_url, user_id, model_id)

    with session_factory() as session:
        jobs = session.scalars(select(Job)).all()
    assert len(jobs) == 2 * workers.WRITES_PER_PROCESS
    assert len({job.id for job in jobs}) == 2 * workers.WRITES_PER_PROCESS
    assert all(job.status == JobStatus.RUNNING.value and job.timings == {"queued": 0.1} for job in jobs)
