"""Shared set-up for the job benchmarks: a data directory, a database, a warm service."""

from __future__ import annotations

import time
from pathlib import Path

from converter.inspection import inspect
from db.session import open_database
from jobs.service import JobService
from jobs.settings import load_settings

MODEL = Path(__file__).resolve().parents[1] / "tests" / "data" / "fer_emotion_model.hdf5"


def warm_service(data_dir: Path, workers: int) -> JobService:
    """A started service whose workers have all imported TensorFlow."""
    settings = load_settings(data_dir=data_dir, workers=workers, database_url="")
    service = JobService(settings, open_database(settings.sqlalchemy_url), reuse_results=False)
    service.start()
    while service.backend.free_slots() < workers:
        time.sleep(0.1)
    return service


def upload_for(service: JobService, telegram_id: int) -> tuple[int, int]:
    """A user and their copy of the benchmark model: (user id, model id)."""
    user = service.catalog.record_user(telegram_id, f"bench{telegram_id}")
    model = service.catalog.store_upload(user.id, MODEL, MODEL.name, inspect(MODEL).to_dict())
    return user.id, model.id
