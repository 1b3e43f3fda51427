"""What the test processes run (spawned: each imports only this module, SQLAlchemy and db/, not pytest)."""

from __future__ import annotations

import os
import traceback
from typing import Any

from db.models import Job, JobStatus, UploadedModel, User
from db.session import make_engine, make_session_factory

WRITES_PER_PROCESS = 50


def upgrade(url: str, barrier: Any, errors: Any) -> None:
    """Migrate `url` as the bot or the service does on start, at the same moment as the other process."""
    try:
        from db.migrate import upgrade as upgrade_database

        barrier.wait(timeout=60)
        upgrade_database(url)
    except BaseException:
        errors.put(traceback.format_exc())


def write_jobs(url: str, barrier: Any, errors: Any, user_id: int, model_id: int) -> None:
    """One writer: a transaction per new job, then a read-modify-write of it, as the job runner does."""
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        barrier.wait(timeout=60)
        for number in range(WRITES_PER_PROCESS):
            with factory.begin() as session:
                job = Job(user_id=user_id, model_id=model_id, cache_key=f"{number:064d}", targets=["tflite"])
                session.add(job)
                session.flush()
                job_id = job.id
            with factory.begin() as session:
                job = session.get_one(Job, job_id)
                job.status = JobStatus.RUNNING.value
                job.timings = {**job.timings, "queued": 0.1}
    except BaseException:
        errors.put(traceback.format_exc())
    finally:
        engine.dispose()


def start_on_new_files(_folder: str, barrier: Any, errors: Any, files: list[str], role: str) -> None:
    """For each SQLite file in `files` (none exists yet), at the same moment as the other processes: start as
    `role` does. "upgrade": migrate, as the bot and `convbot db upgrade` do on start; "write": wait for the schema,
    then open an engine and add a job, as the bot's sessions and `convbot cleanup` do; "read_revision": read the
    revision without migrating, as `convbot doctor` does. Every failure is reported; the rounds go on."""
    from db.migrate import current_revision, head_revision
    from db.migrate import upgrade as upgrade_database

    head = head_revision()
    for number, path in enumerate(files):
        url = f"sqlite:///{path}"
        try:
            barrier.wait(timeout=120)
            if role == "upgrade":
                upgrade_database(url)
            elif role == "read_revision":
                if current_revision(url) not in (None, head):
                    raise AssertionError(f"revision of {path} neither none nor {head}")
            else:
                upgrade_database(url)  # the bot migrates before it opens its sessions
                _add_job(url, number)
        except BaseException:
            errors.put(f"{role} on {path}:\n{traceback.format_exc()}")


def _add_job(url: str, number: int) -> None:
    engine = make_engine(url)
    try:
        with make_session_factory(engine).begin() as session:
            user = User(telegram_id=os.getpid() * 1000 + number, name="Starter", language="en")
            model = UploadedModel(
                user=user, sha256="ef" * 32, size=1, format="frozen_graph", original_name="m.pb", storage_path="m.pb"
            )
            session.add(Job(user=user, model=model, cache_key=f"{number:064d}", targets=["tflite"]))
    finally:
        engine.dispose()
