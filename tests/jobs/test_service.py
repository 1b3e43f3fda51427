"""The job service end to end: real worker processes converting real models, on a real database (SQLite and
PostgreSQL). The scheduling rules themselves are tested in milliseconds in test_scheduler.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.progress import failure_reason
from bot.texts import ZH
from converter import ConversionOptions, Target
from converter.inspection import inspect
from db.models import Job, JobStatus
from jobs import records
from jobs.events import FailureReason
from jobs.service import JobEvent, JobService
from jobs.settings import Settings, load_settings
from jobs.storage import FolderStorage, storage_from_settings

TFLITE_ONLY = ConversionOptions(targets=(Target.TFLITE,))
WAIT = 240.0  # a fresh worker imports TensorFlow first: 20-30 s on a busy 2-core machine


class Recorder:
    """Collects the service's events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[float, JobEvent]] = []
        self.changed = threading.Condition()

    def __call__(self, event: JobEvent) -> None:
        with self.changed:
            self.events.append((time.monotonic(), event))
            self.changed.notify_all()

    def wait_for(self, job_id: int, kind: str, stage: str | None = None, timeout: float = WAIT) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for moment, event in self.events:
                    if event.job_id == job_id and event.kind == kind and stage in (None, event.stage):
                        return moment
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {kind} event for job {job_id}; saw {[e for _, e in self.events]}")
                self.changed.wait(remaining)

    def kinds(self, job_id: int) -> list[str]:
        return [event.kind for _, event in self.events if event.job_id == job_id]


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=database_url, **overrides)


def upload(
    session_factory: sessionmaker[Session], settings: Settings, source: Path, name: str, telegram_id: int
) -> tuple[int, int]:
    """A user and their uploaded model, as the bot records them."""
    with session_factory() as session:
        user = records.ensure_user(session, telegram_id, f"user{telegram_id}")
        summary = inspect(source)
        model = records.store_upload(
            session, storage_from_settings(settings), user, source, name, summary.to_dict(), summary.format.value
        )
        session.commit()
        return user.id, model.id


@pytest.fixture
def service_factory(tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]) -> Iterator[Any]:
    started: list[JobService] = []

    def make(**overrides: Any) -> tuple[JobService, Recorder, Settings]:
        settings = make_settings(tmp_path, database_url, **overrides)
        service = JobService(settings, session_factory)
        recorder = Recorder()
        service.subscribe(recorder)
        service.start()
        started.append(service)
        return service, recorder, settings

    yield make
    for service in started:
        service.stop()


def test_jobs_run_fairly_are_recorded_and_cached(
    service_factory: Any, session_factory: sessionmaker[Session], multihead_graph: Any
) -> None:
    service, events, settings = service_factory(workers=2)
    deadline = time.monotonic() + WAIT
    while service.backend.free_slots() < 2 and time.monotonic() < deadline:  # both workers warm
        time.sleep(0.2)
    ann, ann_model = upload(session_factory, settings, multihead_graph.path, "posenet.pb", 1)
    bob, bob_model = upload(session_factory, settings, multihead_graph.path, "pose_bob.pb", 2)
    first = service.submit(ann, ann_model, TFLITE_ONLY)
    second = service.submit(ann, ann_model, ConversionOptions())  # Ann's second job waits for her first
    third = service.submit(bob, bob_model, ConversionOptions(targets=(Target.TFJS,)))
    # Behind Ann's first job: 2 while the dispatcher has not yet started that one, 1 once it has.
    assert service.status(second).position in (1, 2)

    for job_id in (first, second, third):
        events.wait_for(job_id, "succeeded")
    first_done = events.wait_for(first, "succeeded")
    second_started = events.wait_for(second, "stage", "loading")
    third_started = events.wait_for(third, "stage", "loading")
    assert second_started >= first_done  # at most one running job per user
    assert third_started < second_started  # Bob's later job went ahead of Ann's waiting one
    assert events.kinds(second)[:2] == ["queued", "stage"]
    stages = [e.stage for _, e in events.events if e.job_id == second and e.kind == "stage"]
    # Each file is checked as soon as it is written (and sent then: the artifact events).
    assert stages == ["loading", "load_tensorflow", "convert_tflite", "validate", "convert_tfjs", "validate"]
    assert [e.artifact["kind"] for _, e in events.events if e.job_id == second and e.kind == "artifact"] == [
        "tflite",
        "tfjs",
    ]

    with session_factory() as session:
        job = session.get(Job, second)
        assert job is not None and job.status == JobStatus.SUCCEEDED.value
        assert {a.kind for a in job.artifacts} == {"tflite", "tfjs"}
        tflite = next(a for a in job.artifacts if a.kind == "tflite")
        stored = FolderStorage(settings.data_dir).path(tflite.path)  # a storage key, in the data folder
        assert tflite.file_name == "posenet.tflite" and stored.is_file() and len(tflite.sha256) == 64
        assert tflite.expires_at is not None and job.started_at is not None and job.finished_at is not None
        assert job.result["validation"][0]["status"] == "passed"
        assert "tensorflow" in job.tool_versions and "convert_tflite" in job.timings
        assert stored.is_relative_to(settings.artifacts_dir)

    # The same bytes with the same options: no conversion, the same files.
    again = service.submit(bob, bob_model, TFLITE_ONLY)
    assert events.kinds(again) == ["succeeded"]
    with session_factory() as session:
        cached, original = session.get(Job, again), session.get(Job, first)
        assert cached is not None and original is not None and cached.cached_from_job_id == first
        assert [a.path for a in cached.artifacts] == [a.path for a in original.artifacts]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # worker failures are not about the database
def test_a_crash_a_timeout_a_memory_blow_up_and_a_cancel_fail_only_their_job(
    service_factory: Any,
    session_factory: sessionmaker[Session],
    multihead_graph: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Test hooks, by model file name: abort the worker, hang, eat memory (see converter/isolation.py).
    monkeypatch.setenv("CONVBOT_TEST_HOOK", "")
    service, events, settings = service_factory(workers=1, job_timeout_seconds=45, job_memory_mb=3000)
    user, good = upload(session_factory, settings, multihead_graph.path, "pose.pb", 7)
    outcomes, in_chinese = {}, {}
    for hook, name in (("abort", "crash_me.pb"), ("hang", "slow_me.pb"), ("memory", "hog_me.pb")):
        monkeypatch.setenv("CONVBOT_TEST_HOOK", f"{hook}@{name}")
        service.backend.stop()  # new workers pick up the hook from the environment
        service.backend.start()
        _, bad = upload(session_factory, settings, multihead_graph.path, name, 7)
        job_id = service.submit(user, bad, TFLITE_ONLY)
        events.wait_for(job_id, "failed")
        outcomes[hook] = service.status(job_id).error_message
        failure = next(e for _, e in events.events if e.job_id == job_id and e.kind == "failed")
        in_chinese[hook] = (failure.reason, failure_reason(ZH, failure))
    assert outcomes["abort"] == "the converter crashed (SIGABRT)"
    assert outcomes["hang"] == "the conversion took longer than 45 s and was stopped"
    assert outcomes["memory"] == "the conversion used more than 3000 MB of memory and was stopped"
    # The bot tells a Chinese-speaking user by the reason's code, not by the English message.
    assert in_chinese == {
        "abort": (FailureReason.CRASH, "转换程序崩溃（SIGABRT）"),
        "hang": (FailureReason.TIMEOUT, "转换耗时超过 45 秒，已被停止"),
        "memory": (FailureReason.MEMORY, "转换占用内存超过 3000 MB，已被停止"),
    }

    # Cancelling a running job kills its worker; the replacement runs the next job.
    monkeypatch.setenv("CONVBOT_TEST_HOOK", "hang@slow_me.pb")
    _, slow = upload(session_factory, settings, multihead_graph.path, "slow_me.pb", 7)
    job_id = service.submit(user, slow, ConversionOptions(targets=(Target.TFJS,)))
    events.wait_for(job_id, "stage", "loading")
    assert service.cancel(job_id, user_id=user)
    events.wait_for(job_id, "cancelled")
    after = service.submit(user, good, TFLITE_ONLY)
    events.wait_for(after, "succeeded")
    assert service.status(job_id).status == "cancelled"
    assert "failed" not in events.kinds(job_id)


def test_restart_recovers_a_running_job(
    service_factory: Any,
    session_factory: sessionmaker[Session],
    multihead_graph: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVBOT_TEST_HOOK", "hang@stuck.pb")
    first, events, settings = service_factory(workers=1)
    user, model = upload(session_factory, settings, multihead_graph.path, "stuck.pb", 9)
    job_id = first.submit(user, model, TFLITE_ONLY)
    events.wait_for(job_id, "stage", "loading")
    first.stop()  # the process dies with the job running: the record says so
    assert first.status(job_id).status == "running"

    monkeypatch.setenv("CONVBOT_TEST_HOOK", "")
    restarted = time.monotonic()
    _, events, _ = service_factory(workers=1)
    told = events.wait_for(job_id, "interrupted", timeout=30)
    assert told - restarted < 30  # users are told within 30 s of the restart
    events.wait_for(job_id, "succeeded")  # and get their results from the re-run
    # The second interruption (the job fails) is in test_scheduler.py.
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.interruptions == 1 and job.status == "succeeded"
        assert FolderStorage(settings.data_dir).path(job.artifacts[0].path).is_file()
