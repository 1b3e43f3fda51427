"""The jobs tests' shared fixtures: a job service on a scripted backend, and uploads recorded as the bot
records them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from jobs import records
from jobs.service import JobEvent, JobService
from jobs.settings import Settings, load_settings
from jobs.storage import FolderStorage
from tests.jobs.scripted_backend import ScriptedBackend, tflite_artifact, tflite_result


class Scheduler:
    """A job service with no dispatcher thread on a scripted backend, and the events it emitted."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session], slots: int) -> None:
        self.backend = ScriptedBackend(slots)
        self.service = JobService(settings, session_factory, self.backend)
        self.events: list[JobEvent] = []
        self.service.subscribe(self.events.append)
        self.service.start(dispatch=False)

    def dispatch(self) -> None:
        self.service.dispatch_once()

    def kinds(self, job_id: int) -> list[str]:
        return [event.kind for event in self.events if event.job_id == job_id]

    def of(self, job_id: int) -> list[JobEvent]:
        return [event for event in self.events if event.job_id == job_id]

    def succeed(self, job_id: int) -> None:
        """The running job converts its model and reports one checked file, as a worker does."""
        self.backend.progress(job_id, "convert_tflite")
        artifact, check = tflite_artifact(self.backend.arguments[job_id], self.service.settings.data_dir)
        self.backend.artifact(job_id, artifact, check)
        self.backend.progress(job_id, "validate")
        self.backend.finish(job_id, tflite_result(self.backend.arguments[job_id], self.service.settings.data_dir))
        self.dispatch()

    def position(self, job_id: int) -> int:
        view = self.service.status(job_id)
        assert view is not None
        return view.position

    def status(self, job_id: int) -> str:
        view = self.service.status(job_id)
        assert view is not None
        return view.status


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def scheduler(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Any]:
    """`scheduler(slots)`: a new service on the test's database (several: a restart)."""
    made: list[Scheduler] = []

    def make(slots: int = 1) -> Scheduler:
        made.append(Scheduler(settings, session_factory, slots))
        return made[-1]

    yield make
    for each in made:
        each.service.stop()


@pytest.fixture
def upload(settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path) -> Any:
    """`upload(telegram_id, name, content)` -> (user id, model id), recorded as the bot records an upload."""

    def store(telegram_id: int, name: str, content: bytes | None = None) -> tuple[int, int]:
        source = tmp_path / "uploads" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(content if content is not None else name.encode())  # by default: a model of its own
        with session_factory() as session:
            user = records.ensure_user(session, telegram_id, f"user{telegram_id}")
            storage = FolderStorage(settings.data_dir)
            model = records.store_upload(session, storage, user, source, name, {}, "frozen-graph")
            session.commit()
            return user.id, model.id

    return store
