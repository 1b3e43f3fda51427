"""What the test processes run (spawned: each imports only this module, SQLAlchemy and db/, not pytest)."""

from __future__ import annotations

import traceback
from typing import Any

from db.models import Job, JobStatus
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
