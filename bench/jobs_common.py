"""Shared set-up for the job benchmarks: a data directory, a database, a warm service, a user's upload."""

from __future__ import annotations

import time
from pathlib import Path

from converter.inspection import inspect
from db.session import open_database
from jobs.service import JobService
from jobs.settings import load_settings

MODEL = Path(__file__).resolve().parents[1] / "tests" / "data" / "fer_emotion_model.hdf5"
WARM_TIMEOUT_SECONDS = 600.0  # new worker processes import TensorFlow: 10-30 s each on a busy 2-core machine


def warm_service(data_dir: Path, workers: int, **settings: str) -> JobService:
    """A started service, its results cache off, once `workers` conversion processes have imported TensorFlow
    (its own pool's, or with `broker_url` in `settings` that many `convbot worker` processes)."""
    loaded = load_settings(data_dir=data_dir, workers=workers, database_url="", **settings)
    service = JobService(loaded, open_database(loaded.sqlalchemy_url), reuse_results=False)
    service.start()
    wait_for_slots(service, workers)
    return service


def wait_for_slots(service: JobService, count: int) -> None:
    """Until `count` warm conversion processes are idle."""
    deadline = time.monotonic() + WARM_TIMEOUT_SECONDS
    while service.backend.free_slots() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} warm conversion processes were not ready in {WARM_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.1)


def upload_for(service: JobService, telegram_id: int) -> tuple[int, int]:
    """A user and their copy of the benchmark model, recorded as the bot records them: (user id, model id)."""
    user = service.catalog.record_user(telegram_id, f"bench{telegram_id}")
    model = service.catalog.store_upload(user.id, MODEL, MODEL.name, inspect(MODEL).to_dict())
    return user.id, model.id
